"""Ask a question and see the passages that answer it, with their sources."""

import logging

import streamlit as st

from assistant.errors import AssistantError
from onboard import web

log = logging.getLogger(__name__)

st.title("Ask the handbook")
question = st.text_input("Your question", max_chars=4000, placeholder="How much time off do I get?")
if question.strip():
    try:
        result = web.knowledge_base().retrieve(question)
    except AssistantError as exc:
        log.exception("retrieval failed")
        st.error(str(exc))
        st.stop()
    if not result.answerable:
        st.info(f"The handbook does not seem to answer this ({result.answerability.reason}). Ask People Ops.")
    for doc in result.documents:
        meta = doc.metadata
        label = " › ".join(part for part in (meta.get("title"), meta.get("section")) if part)
        with st.expander(f"[{meta['rank']}] {label} — {meta.get('source')}", expanded=meta["rank"] == 1):
            st.text(doc.page_content)
