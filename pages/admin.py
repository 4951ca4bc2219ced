"""The admin page (admins only: ``streamlit_app.py`` registers it for them alone). A placeholder for now."""

import streamlit as st

from onboard import web

if not web.identity().is_admin:  # belt and braces: the navigation never offers this page to anyone else
    st.error("This page is for admins only.")
    st.stop()

st.title("Admin")
st.info("The admin dashboard is coming soon.", icon=":material/construction:")
