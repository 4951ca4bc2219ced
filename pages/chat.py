"""Chat with the handbook: ask, read the cited answer, rate it; past conversations in the sidebar.

What happens to a question (storing it, the pending answer, streaming, failures)
is in :mod:`ui.web`; this page reads input, calls it and renders. Text
written by people and documents goes through ``web.plain`` (shown exactly as
typed) or ``web.safe_markdown`` (formatting kept, links/images/HTML not).
"""

from __future__ import annotations

import logging
from dataclasses import replace

import streamlit as st

from assistant.errors import AssistantError
from feedback.store import FeedbackError
from ui import web
from ui.help_panel import report_dialog

log = logging.getLogger(__name__)

web.require_page("chat")
state = st.session_state
# The open conversation is in the address too (?c=...): a reload, or a page that reconnects to another app process
# after its own went away (a new session there), reopens it instead of a new chat. Only its owner can open it.
if "conversation_id" not in state:
    state.conversation_id = st.query_params.get("c") or None


# --- callbacks (they run before the page, so the page shows their result) -----------------------------------------


def _flash(kind: str, text: str) -> None:
    state.setdefault("flash", []).append((kind, text))


def _open(conversation_id: str | None) -> None:
    state.conversation_id = conversation_id
    state.pop("regenerate", None)


def _ask(question: str) -> None:
    state.pending_question = question


def _regenerate(question_id: int) -> None:
    state.regenerate = question_id
    state.pop(f"attempt-{question_id}", None)  # the new answer is shown


def _show_attempt(question_id: int, attempt: int) -> None:
    state[f"attempt-{question_id}"] = attempt


def _rename(conversation_id: str) -> None:
    try:
        web.rename(conversation_id, state.get(f"title-{conversation_id}", ""))
    except FeedbackError as exc:
        _flash("error", str(exc))


def _delete(conversation_id: str) -> None:
    try:
        web.delete(conversation_id)
    except FeedbackError as exc:
        _flash("error", str(exc))
    else:
        _flash("toast", "Conversation deleted.")
    if state.conversation_id == conversation_id:
        _open(None)


def _rate(message_id: int) -> None:
    try:
        web.set_thumb(message_id, state.get(f"thumb-{message_id}"))
    except FeedbackError as exc:
        _flash("error", str(exc))


def _send_draft() -> None:
    text = state.get("draft", "")
    if web.check_message(text) is None:
        del state["draft"]
        state.pop("draft_error", None)
        if text.strip():
            state.pending_question = text


def _discard_draft() -> None:
    del state["draft"]
    state.pop("draft_error", None)


def _keep_draft(text: str, why: str) -> None:
    """Keep a message that could not be sent for editing and sending again (shown from the next run on)."""
    state.unsent = (text, why)


# --- rendering -----------------------------------------------------------------------------------------------------


def _sidebar(chat: web.ChatState) -> None:
    with st.sidebar:
        st.button("New conversation", icon=":material/add:", on_click=_open, args=(None,), width="stretch",
                  key="new-conversation")
        if chat.conversations:
            st.caption("Your conversations")
        for conversation in chat.conversations:
            current = chat.conversation is not None and conversation.id == chat.conversation.id
            # One row that never wraps (columns stack on a phone, leaving the menu under the wrong title).
            row = st.container(horizontal=True, vertical_alignment="center", gap="small", wrap=False)
            row.button(web.plain(conversation.title or "Untitled"), key=f"open-{conversation.id}",
                       type="primary" if current else "tertiary", width="stretch",
                       on_click=_open, args=(conversation.id,))
            with row.popover("", icon=":material/more_vert:", key=f"menu-{conversation.id}", width="content",
                             help="Rename, delete or download" if current else "Rename or delete"):
                st.text_input("Title", value=conversation.title, key=f"title-{conversation.id}", max_chars=200)
                st.button("Rename", key=f"rename-{conversation.id}", icon=":material/edit:",
                          on_click=_rename, args=(conversation.id,))
                st.caption(web.DELETE_NOTE)
                sure = st.checkbox(web.DELETE_CONFIRM, key=f"sure-{conversation.id}")
                st.button("Delete", key=f"delete-{conversation.id}", icon=":material/delete:", disabled=not sure,
                          on_click=_delete, args=(conversation.id,))
                if current:
                    st.download_button("Download (JSON)", data=web.export_json(conversation.id),
                                       file_name=f"conversation-{conversation.id}.json", mime="application/json",
                                       icon=":material/download:", key=f"download-{conversation.id}")


def _sources(sources: list[dict], *, abstained: bool = False) -> None:
    """The cited passages, each expanding to its title, section and text, with its link if it has one.

    An abstention lists the passages closest to the question instead, none cited.
    """
    cited = [source for source in sources if source.get("cited", True)]
    if not sources:
        return
    if cited:
        st.caption("Sources")
    else:
        st.caption("Closest passages (they may not answer the question)" if abstained
                   else "Passages consulted (none is cited)")
    for source in cited or sources:
        title = source.get("title") or source.get("source") or "Untitled"
        heading = str(source.get("section") or "").split(" > ")[-1]
        label = f"[{source.get('n', '?')}] {title}" + (f" › {heading}" if heading and heading != title else "")
        with st.expander(web.plain(label)):
            section = str(source.get("section") or "").replace(" > ", " › ")
            where = " › ".join(str(part) for part in (source.get("source"), section) if part)
            if where:
                st.caption(web.plain(where))
            if source.get("passage"):  # as answers are: tables and lists render; Markdown links, images, HTML do not
                st.markdown(web.safe_markdown(source["passage"]))
            url = web.safe_url(source.get("url"))
            if url:
                st.link_button("Open the document", url, icon=":material/open_in_new:", type="tertiary")


def _why(answer_id: int, rating) -> None:
    """After a thumbs down: optional reasons and a comment."""
    told = bool(rating.reasons or rating.comment)
    with st.expander("What was wrong? (optional)", expanded=not told), st.form(f"why-{answer_id}", border=False):
        options = web.settings().chat.feedback_reasons
        # A reason given before the list was changed is no longer offered (Streamlit refuses a default it lacks).
        given = [reason for reason in rating.reasons if reason in options]
        reasons = st.pills("Reasons", options, selection_mode="multi", default=given, format_func=web.reason_label,
                           key=f"reasons-{answer_id}")
        comment = st.text_area("Comment", value=rating.comment or "", max_chars=web.MAX_COMMENT_CHARS,
                               key=f"comment-{answer_id}")
        if st.form_submit_button("Send"):
            try:
                web.rate(answer_id, 0, reasons, comment)
            except FeedbackError as exc:
                st.error(str(exc))
            else:
                st.toast("Thank you: this helps us improve the answers.", icon=":material/favorite:")


def _answer(turn: web.Turn, *, last: bool) -> None:
    answer = turn.answer
    with st.chat_message("assistant"):
        if answer is None:
            st.caption("This question has no answer yet.")
        elif answer.status == "pending" and answer.id in web.unsaved_answers():
            _unsaved(web.unsaved_answers()[answer.id])
        elif answer.status == "pending":
            st.caption("This answer is still being written, or was cut off.")
        else:
            if answer.content:
                st.markdown(web.safe_markdown(answer.content))
            if answer.status not in web.ANSWERED:
                st.error(web.plain(answer.error) if answer.error else web.UNEXPECTED, icon=":material/error:")
            elif answer.error:  # the notice it came with, e.g. the model failed and passages are quoted instead
                st.warning(web.plain(answer.error), icon=":material/info:")
            _sources(answer.sources, abstained=answer.status == "abstained")
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            if answer is not None and answer.status in web.ANSWERED:
                st.feedback("thumbs", key=f"thumb-{answer.id}", default=turn.rating.thumb if turn.rating else None,
                            on_change=_rate, args=(answer.id,))
                with st.popover("Copy", icon=":material/content_copy:", key=f"copy-{answer.id}", type="tertiary"):
                    st.code(web.visible(answer.content), language=None, wrap_lines=True)
            if answer is not None and st.button("Report a problem", icon=":material/flag:", type="tertiary",
                                                 key=f"report-{answer.id}"):
                report_dialog("chat", answer.conversation_id, answer.id)
            if last:
                st.button("Regenerate", icon=":material/refresh:", type="tertiary",
                          key=f"regenerate-{turn.question.id}", on_click=_regenerate, args=(turn.question.id,))
            if turn.attempts > 1:
                _attempts(turn)
        if _same_as_before(turn):
            st.caption("The same as the answer before: quoted answers change only when the documents do.")
        if answer is not None and turn.rating is not None and turn.rating.thumb == 0:
            _why(answer.id, turn.rating)


def _unsaved(closing: web.Closing) -> None:
    """An answer shown but not stored yet (the database did not answer): its text, and that it is not saved."""
    if closing.text:
        st.markdown(web.safe_markdown(closing.text))
    st.warning(web.UNSAVED, icon=":material/cloud_off:")


def _unreachable(question: str | None) -> None:
    """The database did not answer: keep what was typed, show what is not saved yet, and stop."""
    st.error(web.NOT_LOADED, icon=":material/cloud_off:")
    if question is not None:
        state.draft, state.draft_error = question, web.NOT_SAVED
    for closing in web.unsaved_answers().values():
        with st.chat_message("assistant"):
            _unsaved(closing)
    if "draft" in state:
        _draft()
    st.stop()


def _attempts(turn: web.Turn) -> None:
    """'Answer 2 of 3', with buttons to the earlier and later answers to the same question."""
    question_id, shown = turn.question.id, turn.shown
    with st.container(horizontal=True, vertical_alignment="center", gap="small", width="content"):
        st.button("Earlier", icon=":material/chevron_left:", type="tertiary", key=f"earlier-{question_id}",
                  help="The earlier answer", disabled=shown <= 1, on_click=_show_attempt, args=(question_id, shown - 1))
        st.caption(f"Answer {shown} of {turn.attempts}")
        st.button("Later", icon=":material/chevron_right:", type="tertiary", key=f"later-{question_id}",
                  help="The later answer", disabled=shown >= turn.attempts, on_click=_show_attempt,
                  args=(question_id, shown + 1))


def _same_as_before(turn: web.Turn) -> bool:
    """Whether the answer shown is a completed answer with the very text of the completed one before it."""
    shown = turn.shown
    if shown < 2 or turn.answer is None:
        return False
    before = turn.answers[shown - 2][0]
    return (turn.answer.status in web.ANSWERED and before.status in web.ANSWERED
            and bool(turn.answer.content) and turn.answer.content == before.content)


def _question(text: str) -> None:
    with st.chat_message("user"):
        st.markdown(web.plain(text))


def _starters() -> None:
    st.markdown("Ask anything about working here. For example:")
    with st.container(horizontal=True, gap="small"):
        for number, question in enumerate(web.settings().chat.starter_questions):
            st.button(web.plain(question), key=f"starter-{number}", on_click=_ask, args=(question,))


def _draft() -> None:
    """A refused message, kept for editing (the chat box clears itself on send)."""
    why = web.check_message(state.draft) or state.get("draft_error") or "Your message was not sent."
    st.error(why, icon=":material/block:")
    st.text_area("Your message", key="draft", height=200)
    with st.container(horizontal=True, gap="small"):
        st.button("Send", icon=":material/send:", key="send-draft", on_click=_send_draft)
        st.button("Discard", key="discard-draft", on_click=_discard_draft)


# --- the page ------------------------------------------------------------------------------------------------------

st.title("Ask the handbook")
for kind, text in state.pop("flash", []):
    (st.error if kind == "error" else st.toast)(text)

try:
    web.assistant()  # the very first start indexes the sample handbook
except Exception as exc:
    log.exception("the assistant could not start")
    st.error(web.STARTUP_FAILED + (web.plain(f" ({exc})") if isinstance(exc, AssistantError) else ""),
             icon=":material/error:")
    st.stop()

if unsent := state.pop("unsent", None):
    state.draft, state.draft_error = unsent
prompt = st.chat_input("Ask about the handbook…", key="prompt")
if prompt is not None and web.check_message(prompt):
    state.draft = prompt
    prompt = None
pending = state.pop("pending_question", None)  # a starter question, or an edited draft
question = prompt if prompt and prompt.strip() else pending  # an empty message is ignored
regenerate = None if question else state.pop("regenerate", None)

web.save_unsaved()  # answers shown on an earlier run while the database was away
try:
    chat = web.chat_state(state.conversation_id)
except Exception:  # the database is away (a restart): nothing typed is lost
    log.exception("could not read the conversations")
    _unreachable(question)
# Each question shows the answer picked with the arrows (default: its latest); follow-ups build on what is shown.
chat = replace(chat, turns=[turn.showing(state.get(f"attempt-{turn.question.id}")) for turn in chat.turns])
if chat.conversation is None:
    state.conversation_id = None
if st.query_params.get("c") != state.conversation_id:
    if state.conversation_id:
        st.query_params["c"] = state.conversation_id
    else:
        st.query_params.pop("c", None)
_sidebar(chat)

if not chat.turns and question is None and "draft" not in state:
    _starters()
for index, turn in enumerate(chat.turns):
    _question(turn.question.content)
    if turn.question.id != regenerate:
        _answer(turn, last=index == len(chat.turns) - 1 and question is None)
if "draft" in state:
    _draft()

if question is not None or regenerate is not None:
    if question is not None:
        _question(question)
        try:
            state.conversation_id, stored = web.store_question(conversation_id=state.conversation_id, text=question,
                                                               key=web.send_key(question))
            web.sent(question)
        except Exception as exc:  # nothing was saved: keep the question for sending again
            log.exception("could not store a question")
            _keep_draft(question, str(exc) if isinstance(exc, FeedbackError) else web.NOT_SAVED)
            st.rerun()
        history = web.history_before(chat.turns)
    else:
        stored = next((turn.question for turn in chat.turns if turn.question.id == regenerate), None)
        history = web.history_before(chat.turns, regenerate)
    if stored is not None:
        with st.chat_message("assistant"):
            outcome = web.answer(question=stored, history=history)  # escaped as it streams
        if outcome.answer_id is None:  # nothing stored to show the error from
            _flash("error", outcome.error or web.UNEXPECTED)
        st.rerun()  # the stored answer, with its sources and any notice (or, not stored yet, its text)
