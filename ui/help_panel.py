"""The in-app help: a sidebar panel on every page where people ask the support bot, and "Report a problem".

The support bot answers from the project's documentation only (see
:mod:`service.support`); its conversations are stored like the assistant's,
marked ``support``, with thumbs on every answer, and deleted like them. "Report a problem" opens a
short form from here or from any answer in the chat, and files a ticket the
admins triage on the dashboard. Like the pages, this only lays things out:
storing and answering go through :mod:`ui.web`.
"""

from __future__ import annotations

import logging

import streamlit as st

from feedback.store import FeedbackError
from ui import web

log = logging.getLogger(__name__)

SHOWN_TURNS = 3
HELP_INPUT_CHARS = 1000


@st.dialog("Report a problem")
def report_dialog(page: str, conversation_id: str | None = None, message_id: int | None = None,
                  text: str = "") -> None:
    """A short form: what went wrong. The page, conversation and answer are attached by the app."""
    if message_id is not None:
        st.caption("The answer you reported from is attached, so the team can see what you saw.")
    with st.form("report-problem", border=False):
        body = st.text_area("What went wrong?", value=text, max_chars=4000, height=150,
                            placeholder="What did you try, what happened, what did you expect?")
        if st.form_submit_button("Send the report", icon=":material/send:", type="primary"):
            try:
                number = web.report_problem(body, page=page, conversation_id=conversation_id, message_id=message_id)
            except FeedbackError as error:
                st.error(str(error))
                return
            except Exception:
                log.exception("could not store a problem report")
                st.error("Your report could not be saved. Please try again in a moment.")
                return
            st.session_state["reported"] = number
            st.rerun()


def _rate(message_id: int) -> None:
    try:
        web.set_thumb(message_id, st.session_state.get(f"help-thumb-{message_id}"))
    except FeedbackError as error:
        st.session_state["help-error"] = str(error)


def _turn(turn: web.Turn, page: str, conversation_id: str) -> None:
    st.markdown(f"**{web.plain(turn.question.content)}**")
    answer = turn.answer
    if answer is not None and answer.status == "pending" and answer.id in web.unsaved_answers():
        st.markdown(web.safe_markdown(web.unsaved_answers()[answer.id].text))  # shown, not stored yet
        st.caption(web.plain(web.UNSAVED))
        return
    if answer is None or answer.status == "pending":
        st.caption("No answer yet.")
        return
    if answer.content:
        st.markdown(web.safe_markdown(answer.content))
    if answer.status not in web.ANSWERED:
        st.caption(web.plain(answer.error or web.UNEXPECTED))
        return
    if answer.error:  # the notice it came with (the model failed, the passages are quoted instead)
        st.caption(web.plain(answer.error))
    cited = [s for s in answer.sources if s.get("cited", True)]
    if not cited and answer.status == "abstained" and answer.sources:  # the closest passages, none cited
        st.caption("Closest pages (they may not answer the question):")
    for source in cited or (answer.sources if answer.status == "abstained" else []):
        section = str(source.get("section") or "").split(" > ")[-1]
        st.caption(web.plain(f"[{source.get('n')}] {source.get('title') or source.get('source')}"
                             + (f" › {section}" if section else "")))
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        st.feedback("thumbs", key=f"help-thumb-{answer.id}", default=turn.rating.thumb if turn.rating else None,
                    on_change=_rate, args=(answer.id,))
        if answer.status == "abstained" and st.button("Report a problem", key=f"help-report-{answer.id}",
                                                      icon=":material/flag:", type="tertiary"):
            report_dialog(page, conversation_id, answer.id, text=turn.question.content)


def render(page: str) -> None:
    """The Help panel in the sidebar of the current page."""
    settings = web.settings()
    if number := st.session_state.pop("reported", None):
        st.toast(f"Thank you: problem report #{number} was sent to the team.", icon=":material/flag:")
    if st.session_state.pop("help-deleted", None):
        st.toast("Help conversation deleted.")
    if not settings.support.enabled:
        with st.sidebar:
            if st.button("Report a problem", icon=":material/flag:", key="report-sidebar"):
                report_dialog(page)
        return
    with st.sidebar, st.expander("Help", icon=":material/help:"):
        if error := st.session_state.pop("help-error", None):
            st.error(error)
        try:
            web.save_unsaved()  # an answer shown while the database was away
            conversation_id, shown = web.support_state()
        except Exception:
            log.exception("the help panel could not load")
            typed = st.session_state.get("help-question")  # a question sent as the database went away
            if isinstance(typed, str) and typed.strip():
                st.session_state["help-unsent"] = typed  # back in the box once the panel loads
                st.caption(f"Help is not available right now. {web.NOT_SAVED}")
            else:
                st.caption("Help is not available right now.")
            return
        if not shown:
            st.caption("Questions about this app: how to rate an answer, who can see your chats, "
                       "why it said it doesn't know…")
        for turn in shown[-SHOWN_TURNS:]:
            _turn(turn, page, conversation_id)
        if unsent := st.session_state.pop("help-unsent", None):  # kept for sending again
            st.session_state["help-question"] = unsent
        with st.form("help-ask", clear_on_submit=True, border=False):
            question = st.text_input("Ask about this app", max_chars=HELP_INPUT_CHARS, key="help-question")
            asked = st.form_submit_button("Ask", icon=":material/send:")
        if asked and question and question.strip():
            _ask(question.strip(), conversation_id, shown)
        with st.container(horizontal=True, gap="small"):
            if st.button("Report a problem", icon=":material/flag:", key="report-help", type="tertiary"):
                report_dialog(page, conversation_id)
            if shown and st.button("Start over", icon=":material/add:", key="help-new", type="tertiary"):
                web.new_support_conversation()
                st.rerun()
            if conversation_id:
                _delete_menu(conversation_id)


def _delete_menu(conversation_id: str) -> None:
    """Delete the help conversation shown, as chat conversations are deleted (confirmed first)."""
    with st.popover("Delete", icon=":material/delete:", type="tertiary", key="help-delete-menu"):
        st.caption(web.DELETE_NOTE)
        sure = st.checkbox(web.DELETE_CONFIRM, key=f"help-sure-{conversation_id}")
        st.button("Delete", key=f"help-delete-{conversation_id}", icon=":material/delete:", disabled=not sure,
                  on_click=_delete, args=(conversation_id,))


def _delete(conversation_id: str) -> None:
    try:
        web.delete(conversation_id)
    except FeedbackError as error:
        st.session_state["help-error"] = str(error)
    except Exception:
        log.exception("could not delete help conversation %s", conversation_id)
        st.session_state["help-error"] = "The conversation could not be deleted. Please try again in a moment."
    else:
        st.session_state["help-deleted"] = True


def _ask(question: str, conversation_id: str | None, shown: list[web.Turn]) -> None:
    try:
        _, stored = web.store_question(conversation_id=conversation_id, text=question, kind=web.SUPPORT_KIND)
    except FeedbackError as error:
        st.error(str(error))
        return
    except Exception:  # nothing was saved: put the question back in the box
        log.exception("could not store a help question")
        st.session_state["help-error"] = web.NOT_SAVED
        st.session_state["help-unsent"] = question
        st.rerun()
    st.markdown(f"**{web.plain(question)}**")
    outcome = web.answer(question=stored, history=web.history_before(shown))  # escaped as it streams
    if outcome.error:
        st.error(web.plain(outcome.error))
        return
    st.rerun()
