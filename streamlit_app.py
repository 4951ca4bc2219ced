"""Entry point of the web app: declares the pages and the navigation."""

import streamlit as st

st.set_page_config(page_title="Onboarding assistant", page_icon=":material/school:", layout="wide")

pages = [st.Page("pages/ask.py", title="Ask the handbook", icon=":material/search:", default=True)]
st.navigation(pages).run()
