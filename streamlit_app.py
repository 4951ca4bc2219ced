"""Entry point of the web app: page setup, the local-mode banner, and the navigation."""

import streamlit as st

from onboard import web

st.set_page_config(page_title="Onboarding assistant", page_icon=":material/school:", layout="wide")

# Until login exists (next issue) everyone is the one local user: say so on every page.
st.info(web.LOCAL_MODE_NOTICE, icon=":material/lock_open:")

pages = [st.Page("pages/chat.py", title="Ask the handbook", icon=":material/chat:", default=True)]
st.navigation(pages).run()
