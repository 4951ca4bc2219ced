"""Resources shared by the Streamlit pages, built once per process.

The only module outside ``pages/`` that imports Streamlit: it caches the
factories of :mod:`onboard.factories` with ``st.cache_resource`` so every
session of the app shares one embedding model, one Chroma client and one
database engine.
"""

from __future__ import annotations

import streamlit as st

from onboard import factories
from onboard.settings import Settings


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return Settings()


@st.cache_resource(show_spinner="Loading the knowledge base…")
def knowledge_base():
    current = settings()
    factories.make_engine(current)
    from onboard.cli import bootstrap

    bootstrap(current)
    return factories.make_knowledge_base(current)
