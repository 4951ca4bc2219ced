"""What ``onboard serve`` runs: the Streamlit pages and, on the same port, the REST API under ``/api/v1``.

``streamlit run asgi.py`` (Streamlit finds the ``app`` below) serves
``streamlit_app.py`` as before and mounts the API beside it
(``ONBOARD_API__ENABLED=false`` leaves it out). The API's chat service is
made on its first request, on the knowledge base the pages use
(:func:`onboard.factories.shared_knowledge_base`: one embedding model and
keyword index in memory).
"""

from pathlib import Path

import streamlit as st
from starlette.routing import Mount

from api.app import PREFIX, mountable
from onboard.settings import Settings

settings = Settings()
app = st.App(str(Path(__file__).resolve().parent / "streamlit_app.py"),
             routes=[Mount(PREFIX, app=mountable(settings))] if settings.api.enabled else [])
