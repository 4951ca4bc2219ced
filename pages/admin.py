"""The admin dashboard: feedback trends, usage and cost, worst answers, knowledge gaps, triage, export, audit, API keys.

Admins only (``streamlit_app.py`` registers the page for them alone; checked
again here). Figures come from :mod:`feedback.analytics` (SQL aggregates),
tables and charts from :mod:`ui.dashboard`; this page only lays them out.
Everything people wrote is shown as text or in data tables, never as HTML.
Opening a conversation, exporting answers, creating and revoking an API key
are recorded in the audit trail (:mod:`feedback.audit`), which the "Admin
access" tab lists. A new key's secret exists only in the run that made it (a
local variable shown once with ``st.code``): never in the session state, the
cache or the log, so the next rerun cannot show it again.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import streamlit as st
from sqlmodel import Session

from assistant.manifest import recent_runs
from feedback import analytics, audit, keys, review, store
from feedback.gaps import group_questions
from feedback.models import CHANNELS, TRIAGE_STATUSES, User
from ui import dashboard as views
from ui import web

log = logging.getLogger(__name__)

web.require_page("admin")

settings = web.settings()
#: Part of every cached figure's key: figures of one database are never shown for another.
DATABASE = settings.database_url
STATUS_LABELS = {"new": "New", "in_progress": "In progress", "fixed": "Fixed", "wont_fix": "Won't fix"}
ANY = "(any)"
#: The most audit rows the "Admin access" tab lists (newest first).
AUDIT_ROWS = 500
#: Indexing runs the "Index" tab lists (newest first).
INDEX_RUNS = 20
#: The session-state key of the number of keys made on this page: part of the form's widget keys, so a key made
#: leaves an empty form on the next run (a new form) while a refused one keeps what was typed.
KEY_FORM = "api_key_form"
#: The session-state key of the key waiting for the admin to confirm its revocation.
REVOKE_PENDING = "api_key_revoke_pending"
#: Set when a revocation could not be stored (shown once on the next run).
REVOKE_FAILED = "api_key_revoke_failed"
KEY_NOT_SAVED = "The change could not be saved, so nothing was changed. Please try again in a moment."


@st.cache_data(ttl=600, show_spinner=False)
def _choices(database: str, kind: str, start, end) -> analytics.Choices:
    with web.db() as session:
        return analytics.choices(session, kind, start=start, end=end)


def _prices() -> dict[str, analytics.Price]:
    return {model: analytics.Price(p.input, p.output) for model, p in settings.costs.prices.items()}


@st.cache_data(ttl=60, show_spinner=False)
def _headline_figures(database: str, f: analytics.Filters) -> tuple[analytics.Overview, list[analytics.Spend]]:
    with web.db() as session:
        return analytics.overview(session, f), analytics.spend(session, f, _prices())


@st.cache_data(ttl=60, show_spinner=False)
def _feedback_figures(database: str, f: analytics.Filters, split: str, weekly: bool, cohort: tuple[str, ...]) -> dict:
    with web.db() as session:
        return {
            "trend": analytics.rating_trend(session, f, split=split, weekly=weekly, cohort=cohort),
            "reasons": analytics.reason_counts(session, f, settings.chat.feedback_reasons),
            "comments": analytics.comments(session, f, limit=30),
        }


@st.cache_data(ttl=60, show_spinner=False)
def _usage_figures(database: str, f: analytics.Filters) -> dict:
    with web.db() as session:
        return {
            "usage": analytics.daily_usage(session, f),
            "wau": analytics.weekly_active_users(session, f),
            "latency": analytics.latency_by_day(session, f),
        }


@st.cache_data(ttl=300, show_spinner="Grouping questions into topics…")
def _topics(database: str, f: analytics.Filters):
    with web.db() as session:
        questions = analytics.gap_questions(session, f, limit=settings.dashboard.gap_questions)
    return group_questions(questions, web.embed_texts, similarity=settings.dashboard.gap_similarity)


@st.dialog("Conversation", width="large")
def _conversation(conversation_id: str) -> None:
    with web.db() as session:
        try:
            found = review.conversation_for_admin(session=session, admin=web.current_user(session),
                                                  conversation_id=conversation_id)
        except store.NotFound:
            st.warning("This conversation no longer exists.")
            return
    st.caption(f"{web.plain(found.owner)} · team {web.plain(found.team)} · {found.kind}"
               + (" · deleted by its owner" if found.deleted else ""))
    for message in found.messages:
        with st.chat_message(message.role):
            st.markdown(web.safe_markdown(message.content) or "_(no text)_")
            if message.role == "assistant":
                details = [f"regenerated (answer {message.attempt})" if message.attempt > 1 else "",
                           message.status, message.answerer or "", message.model or ""]
                if message.thumb is not None:
                    details.append("👍" if message.thumb else "👎")
                st.caption(" · ".join(web.plain(d) for d in details if d))
                if message.reasons or message.comment:
                    st.caption(web.plain(", ".join(map(web.reason_label, message.reasons)) +
                                         (f" — “{message.comment}”" if message.comment else "")))
                for source in message.sources:
                    uncited = "" if source.get("cited", True) else " — not cited"
                    st.caption(web.plain(f"[{source.get('n')}] {source.get('title')} › {source.get('section')}"
                                         f" ({source.get('source')}){uncited}"))


def _filters() -> tuple[analytics.Filters, str, bool]:
    today = datetime.now(UTC).date()
    with st.container(border=True):
        top = st.columns([2, 1.5, 1.2, 1])  # "Assistant | Support" needs the room
        picked = top[0].date_input("Dates", value=(today - timedelta(days=settings.dashboard.default_days - 1),
                                                   today), max_value=today, key="dates")
        start, end = (picked[0], picked[-1]) if isinstance(picked, tuple) and picked else (today, today)
        kind = top[1].segmented_control("Conversations", ["assistant", "support"], default="assistant",
                                        format_func=str.capitalize, key="kind") or "assistant"
        split = top[2].selectbox("Compare by", analytics.SPLITS, format_func=lambda s: s.replace("_", " "),
                                 key="split")
        weekly = top[3].segmented_control("Per", ["day", "week"], default="week", key="period") == "week"
        choices = _choices(DATABASE, kind, start, end)
        row = st.columns(7)
        pick = {name: row[i].selectbox(label, [ANY, *values], key=f"filter_{name}")
                for i, (name, label, values) in enumerate((
                    ("channel", "Channel", CHANNELS),
                    ("group", "Group / cohort", choices.groups), ("team", "Team", choices.teams),
                    ("answerer", "Answerer", choices.answerers), ("model", "Model", choices.models),
                    ("prompt_version", "Prompt version", choices.prompt_versions),
                    ("feature", "Rollout feature", choices.features)))}
    return analytics.Filters(start=start, end=end, kind=kind,
                             **{k: (None if v == ANY else v) for k, v in pick.items()}), split, weekly


def _headline(o: analytics.Overview, cost: float) -> None:
    cells = st.columns(6)
    cells[0].metric("Questions", f"{o.questions:,}", help=f"{o.conversations:,} conversations")
    per_person = "–" if o.questions_per_user is None else f"{o.questions_per_user:.1f}"
    cells[1].metric("People", f"{o.users:,}", help=f"{per_person} questions per person")
    cells[2].metric("Thumbs up", views.percent(o.ratings.share),
                    help=f"95% interval and count: {views.share_text(o.ratings)}")
    cells[3].metric("Abstained", views.percent(o.abstention_rate),
                    help=f"{o.abstained:,} of {o.answers:,} answers abstained (nothing related); {o.unsure:,} "
                         f"({views.percent(o.unsure_rate)}) quoted the closest passages under 'not sure'")
    cells[4].metric("Cost", f"${cost:,.2f}" if cost < 1000 else f"${cost:,.0f}", help=f"{o.input_tokens:,} tokens in, {o.output_tokens:,} out")
    cells[5].metric("Latency p95", views.milliseconds(o.latency_p95),
                    help=f"p50 {views.milliseconds(o.latency_p50)}; first token p50 {views.milliseconds(o.ttft_p50)}, "
                         f"p95 {views.milliseconds(o.ttft_p95)}")


def _by_channel(o: analytics.Overview) -> None:
    """Questions, answers and people per channel (the page, the API, batch files, the Help panel)."""
    frame = views.channel_frame(o.by_channel)
    if frame.empty:
        return  # the headline already says there is nothing in this period
    left, right = st.columns([3, 2])
    left.altair_chart(views.channel_chart(frame), width="stretch")
    right.dataframe(frame, hide_index=True, key="by_channel")


def _chart(chart, frame, key: str) -> None:
    """A chart with the numbers behind it one click away."""
    if frame.empty:
        st.caption("Nothing in this period.")
        return
    st.altair_chart(chart, width="stretch")
    with st.expander("Numbers", icon=":material/table:"):
        st.dataframe(frame, hide_index=True, key=f"numbers_{key}")


def _feedback_tab(fig: dict, split: str) -> None:
    trend = views.trend_frame(fig["trend"])
    st.subheader("Share of thumbs up")
    _chart(views.trend_chart(trend), trend, "trend")
    if split != "none":
        st.dataframe(views.series_totals(fig["trend"]), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="percent")
                                    for c in ("share_up", "ci_low", "ci_high")})
    left, right = st.columns(2)
    with left:
        st.subheader("Why people dislike answers")
        reasons = views.reasons_frame(fig["reasons"], web.reason_label)
        if reasons["thumbs_down"].sum() == 0:
            st.caption("No reasons given in this period.")
        else:
            _chart(views.bar_chart(reasons, "reason", "thumbs_down", "Thumbs down"), reasons, "reasons")
    with right:
        st.subheader("Latest comments")
        comments = [{"when": c.at, "thumb": "👍" if c.thumb else "👎", "comment": c.comment,
                     "reasons": ", ".join(map(web.reason_label, c.reasons)), "conversation": c.conversation_id}
                    for c in fig["comments"]]
        if comments:
            st.dataframe(web.visible_rows(comments), hide_index=True, key="comments", column_config={
                "when": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm"),
                "thumb": st.column_config.TextColumn("", width="small"),
                "comment": st.column_config.TextColumn("Comment", width="large"),
                "reasons": "Reasons", "conversation": "Conversation"})
        else:
            st.caption("No comments in this period.")


def _usage_tab(fig: dict, spent: list[analytics.Spend], f: analytics.Filters) -> None:
    usage = views.usage_frame(fig["usage"], fig["wau"])
    st.subheader("Questions and active people")
    _chart(views.lines_chart(usage, "day", ["questions", "daily active people", "weekly active people"], "Per day"),
           usage, "usage")
    spend = views.spend_frame(spent)
    st.subheader("Cost per day and team")
    _chart(views.cost_chart(spend), spend, "spend")
    teams = views.team_frame(spend, settings.costs.team_budgets, (f.end - f.start).days + 1)
    if not teams.empty:
        st.dataframe(teams, hide_index=True, key="teams", column_config={
            "team": "Team",
            "input_tokens": st.column_config.NumberColumn("Tokens in", format="localized"),
            "output_tokens": st.column_config.NumberColumn("Tokens out", format="localized"),
            "cost": st.column_config.NumberColumn("Cost", format="dollar"),
            "budget_for_period": st.column_config.NumberColumn("Budget for the period", format="dollar"),
            "share_of_budget": st.column_config.ProgressColumn("Share of budget", format="percent", min_value=0,
                                                               max_value=1)})
    latency = views.latency_frame(fig["latency"])
    st.subheader("Latency")
    _chart(views.lines_chart(latency, "day", ["answer p50", "answer p95", "first token p50", "first token p95"],
                             "Milliseconds"), latency, "latency")


def _triage_form(subject: str, subject_id: int, status: str, owner: str, note: str, key: str) -> None:
    with st.form(f"triage_{key}", border=False):
        cols = st.columns([1, 1, 2])
        new_status = cols[0].selectbox("Status", TRIAGE_STATUSES, index=TRIAGE_STATUSES.index(status),
                                       format_func=STATUS_LABELS.get)
        new_owner = cols[1].text_input("Owner", value=owner, max_chars=255)
        new_note = cols[2].text_input("Note", value=note, max_chars=review.MAX_NOTE_CHARS)
        if st.form_submit_button("Save"):
            with web.db() as session:
                try:
                    review.set_triage(session=session, actor=web.current_user(session), subject=subject,
                                      subject_id=subject_id, status=new_status, owner=new_owner, note=new_note)
                except store.FeedbackError as error:
                    st.error(str(error))
                    return
            st.toast("Saved")
            st.session_state["triage_saved"] = key  # its title changes with its status: keep it open to show the history
            st.rerun()
    with web.db() as session:
        changes = review.triage_history(session=session, subject=subject, subject_id=subject_id)
    if changes:
        st.dataframe(web.visible_rows([{"when": c.at, "by": c.by, "from": STATUS_LABELS.get(c.old_status, c.old_status),
                                        "to": STATUS_LABELS[c.status], "owner": c.owner, "note": c.note}
                                       for c in changes]),
                     hide_index=True, key=f"history_{key}")


def _answers_tab(f: analytics.Filters) -> None:
    with web.db() as session:
        counts = analytics.triage_counts(session, f)
    status = st.segmented_control(
        "Triage status", TRIAGE_STATUSES, key="triage_status",
        format_func=lambda s: f"{STATUS_LABELS[s]} ({counts.get(s, 0):,})")
    with web.db() as session:
        rows = analytics.thumbs_down(session, f, triage_status=status, limit=25)
    if not rows:
        st.caption("No thumbs down here.")
    for row in rows:
        title = f"{STATUS_LABELS[row.triage_status]} · {row.question[:90]}"
        with st.expander(web.plain(title), expanded=st.session_state.get("triage_saved") == f"rating_{row.rating_id}"):
            st.markdown("**Question**")
            st.text(web.visible(row.question))
            st.markdown("**Answer**")
            st.markdown(web.safe_markdown(row.answer) or "_(no text)_")
            st.caption(web.plain(" · ".join(x for x in (row.status, row.answerer, row.model, row.prompt_version) if x)))
            if row.sources:
                st.dataframe(web.visible_rows([{**{k: s.get(k) for k in ("n", "title", "section", "source")},
                                                "cited": s.get("cited", True)} for s in row.sources]),
                             hide_index=True, key=f"sources_{row.rating_id}")
            if row.reasons or row.comment:
                st.markdown("**Feedback**")
                st.text(web.visible(", ".join(map(web.reason_label, row.reasons))
                                    + (f"\n{row.comment}" if row.comment else "")))
            if st.button("Open the conversation", key=f"open_{row.rating_id}", icon=":material/forum:"):
                _conversation(row.conversation_id)
            _triage_form("rating", row.rating_id, row.triage_status, row.triage_owner, row.triage_note,
                         f"rating_{row.rating_id}")


def _gaps_tab(f: analytics.Filters) -> None:
    st.caption("Questions the assistant abstained on, was unsure about (it quoted the closest passages), or whose "
               "answer was rated down, grouped by meaning.")
    topics = _topics(DATABASE, f)
    if not topics:
        st.caption("No gaps in this period.")
        return
    st.dataframe(web.visible_rows(views.topics_frame(topics)), hide_index=True, key="topics")
    for i, topic in enumerate(topics[:15]):
        people = "1 person" if topic.people == 1 else f"{topic.people} people"
        questions = "1 question" if topic.count == 1 else f"{topic.count} questions"
        with st.expander(web.plain(f"{topic.label} — {questions} from {people}")):
            for example in topic.examples:
                why = "abstained" if example.abstained else "unsure" if example.unsure else "rated down"
                st.text(f"{example.at:%Y-%m-%d}  {why}  "
                        f"{web.visible(example.question)}")
            if st.button("Open the latest conversation", key=f"gap_{i}", icon=":material/forum:"):
                _conversation(topic.examples[0].conversation_id)


def _tickets_tab(f: analytics.Filters) -> None:
    status = st.segmented_control("Status", TRIAGE_STATUSES, key="ticket_status", format_func=STATUS_LABELS.get)
    with web.db() as session:
        found = review.tickets(session=session, since=f.since, until=f.until, status=status)
    if not found:
        st.caption("No problem reports here.")
    for ticket in found:
        with st.expander(web.plain(f"{STATUS_LABELS[ticket.status]} · {ticket.created_at:%Y-%m-%d} · "
                                   f"{ticket.reporter} · {ticket.text[:80]}"),
                         expanded=st.session_state.get("triage_saved") == f"ticket_{ticket.id}"):
            st.text(web.visible(ticket.text))
            st.caption(web.plain(f"From {ticket.reporter} {ticket.email} on the {ticket.page or 'app'} page"))
            if ticket.conversation_id and st.button("Open the conversation", key=f"ticket_open_{ticket.id}"):
                _conversation(ticket.conversation_id)
            _triage_form("ticket", ticket.id, ticket.status, ticket.owner, ticket.note, f"ticket_{ticket.id}")


def _export_tab(f: analytics.Filters) -> None:
    st.write("The answers of the filtered period with their ratings and comments, or the reviewed ones as "
             "evaluation cases for `onboard eval --dataset`. Files are made when you click.")
    st.caption("Each download is recorded with your name, the number of answers and the filters (Admin access tab).")
    stamp = f"{f.start:%Y%m%d}-{f.end:%Y%m%d}"
    engine = web.engine()
    with web.db() as session:
        admin_id = web.current_user(session).id

    def made_as(fmt: str):
        def make() -> str:  # runs on click, outside the script: no Streamlit calls here
            with Session(engine) as session:
                return review.export_for_admin(session=session, admin=session.get(User, admin_id), f=f, fmt=fmt)
        return make

    with st.container(horizontal=True, gap="small"):
        st.download_button("Answers (CSV)", made_as("csv"), f"answers-{stamp}.csv", "text/csv",
                           icon=":material/download:", on_click="ignore", key="export_csv")
        st.download_button("Reviewed answers (JSONL, evaluation format)", made_as("jsonl"),
                           f"reviewed-{stamp}.jsonl", "application/jsonl", icon=":material/download:",
                           on_click="ignore", key="export_jsonl")


def _audit_tab(f: analytics.Filters) -> None:
    st.caption("Every time an admin opened someone's conversation, downloaded an export, or created or revoked an "
               "API key, newest first. Nobody can change or delete these rows from the app.")
    with web.db() as session:
        found = audit.entries(session=session, since=f.since, until=f.until, limit=AUDIT_ROWS)
    if not found:
        st.caption("No conversation opened and nothing exported in this period.")
        return
    if len(found) == AUDIT_ROWS:
        st.caption(f"The latest {AUDIT_ROWS}; narrow the dates to see older ones.")
    st.dataframe(web.visible_rows(views.audit_frame(found)), hide_index=True, key="audit", column_config={
        "when": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm:ss"),
        "admin": "Admin", "admin_email": "Admin e-mail", "what": "What",
        "owner": "Whose", "owner_email": "Their e-mail", "conversation": "Conversation",
        "filters": st.column_config.TextColumn("Filters", width="large")})


def _keys_tab() -> None:
    st.caption("Keys programs use to ask through the REST API (`Authorization: Bearer onb_…`), newest first, "
               "whatever the filters above. Only a hash of each key is kept: a key is shown once, when it is made. "
               "The same keys as `onboard keys list`.")
    _new_key_form()
    with web.db() as session:
        found = keys.list_keys(session)
    if not found:
        st.caption("No API keys yet.")
        return
    st.dataframe(web.visible_rows(views.keys_frame(found, settings.api.rate_per_minute)), hide_index=True,
                 key="api_keys", column_config={
                     "id": "Id", "key": "Key", "name": "Name", "team": "Team", "groups": "Groups",
                     "on_behalf": st.column_config.CheckboxColumn("On behalf"),
                     "rate_per_minute": "Requests per minute",
                     "created": st.column_config.DatetimeColumn("Created", format="YYYY-MM-DD HH:mm"),
                     "created_by": "Created by",
                     "expires": "Expires", "last_used": "Last used",
                     "state": "State"})
    _revoke([key for key in found if keys.state(key) == "active"])


def _new_key_form() -> None:
    """Make a key; its secret is shown in this run only (a local variable, never stored in the session)."""
    made = st.session_state.get(KEY_FORM, 0)
    st.subheader("Create a key")
    with st.form(f"new_key_{made}"):
        top = st.columns(3)
        name = top[0].text_input("Name", max_chars=keys.MAX_NAME_CHARS, key=f"key_name_{made}",
                                 placeholder="Slack bot", help="What the key is for.")
        team = top[1].text_input("Team", max_chars=keys.MAX_TEAM_CHARS, key=f"key_team_{made}",
                                 help="The team the key's usage and cost are counted for.")
        groups = top[2].text_input("Groups", key=f"key_groups_{made}", placeholder="staff, hr",
                                   help="Comma-separated: the documents the key may read, as a person's groups "
                                        "decide. None: only documents meant for everyone.")
        bottom = st.columns(3)
        days = bottom[0].number_input("Expires after (days)", min_value=1, max_value=keys.MAX_EXPIRES_DAYS,
                                      value=None, step=1, key=f"key_days_{made}", placeholder="never")
        rate = bottom[1].number_input("Requests per minute", min_value=1, max_value=keys.MAX_RATE_PER_MINUTE,
                                      value=None, step=1, key=f"key_rate_{made}",
                                      placeholder=f"default ({settings.api.rate_per_minute})")
        on_behalf = bottom[2].checkbox("May ask on behalf of a person", key=f"key_on_behalf_{made}",
                                       help="The program may name a person (X-On-Behalf-Of); the answers are "
                                            "stored as that person's conversations.")
        submitted = st.form_submit_button("Create key", icon=":material/add:")
    if not submitted:
        return
    with web.db() as session:
        admin = web.current_user(session)
        try:
            key, secret = keys.create_key(session, name=name, team=team, groups=groups.split(","),
                                          expires_days=days, on_behalf=on_behalf, rate_per_minute=rate,
                                          created_by=admin.email or admin.name or admin.subject, commit=False)
        except store.FeedbackError as error:
            st.error(str(error))  # the form keeps what was typed
            return
        try:  # one commit for the key and its audit row: no key without its record of who made it
            audit.record_key_change(session=session, admin=admin, action=audit.CREATE_API_KEY, key=key)
        except Exception:
            session.rollback()
            log.exception("could not create an API key")
            st.error(KEY_NOT_SAVED)
            return
    st.session_state[KEY_FORM] = made + 1  # the next run shows an empty form
    st.success(web.plain(f"Created key {views.shown_prefix(key.prefix)} ({key.name}) for team {key.team}."))
    st.code(secret, language=None)
    st.warning("Copy this key now and keep it in the program's secret store: it cannot be shown again (only its "
               "hash is kept). A lost key cannot be recovered; revoke it and create another.")


def _key_label(key) -> str:
    return web.visible(f"{views.shown_prefix(key.prefix)} {key.name} (team {key.team}, id {key.id})")


def _revoke(active: list) -> None:
    if st.session_state.pop(REVOKE_FAILED, False):
        st.error(KEY_NOT_SAVED)
    if not active:
        return
    by_id = {key.id: key for key in active}
    pending = by_id.get(st.session_state.get(REVOKE_PENDING))
    if pending is None:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            chosen = st.selectbox("Revoke a key", list(by_id), format_func=lambda i: _key_label(by_id[i]),
                                  index=None, placeholder="Choose an active key", key="revoke_choice")
            if st.button("Revoke…", key="revoke_ask", disabled=chosen is None, icon=":material/block:"):
                st.session_state[REVOKE_PENDING] = chosen
                st.rerun()
        return
    st.warning(web.plain(f"Revoke {_key_label(pending)}? Programs using it are refused from their next request; "
                         "this cannot be undone."))
    with st.container(horizontal=True):
        confirmed = st.button("Yes, revoke", key="revoke_yes", type="primary")
        cancelled = st.button("Cancel", key="revoke_cancel")
    if not (confirmed or cancelled):
        return
    st.session_state.pop(REVOKE_PENDING, None)
    if confirmed:
        with web.db() as session:
            admin = web.current_user(session)  # (it may commit its own update): before the revocation
            key = keys.revoke_key(session, pending.id, commit=False)
            try:  # one commit for the revocation and its audit row
                audit.record_key_change(session=session, admin=admin, action=audit.REVOKE_API_KEY, key=key)
            except Exception:
                session.rollback()
                log.exception("could not revoke API key %s", pending.id)
                st.session_state[REVOKE_FAILED] = True
                st.rerun()
        st.toast(web.plain(f"Revoked {views.shown_prefix(key.prefix)} ({key.name})"))
    st.rerun()


def _index_tab() -> None:
    st.caption(f"The latest {INDEX_RUNS} indexing runs (`onboard ingest`, `--watch`, `onboard worker`, the app's "
               "own), newest first, whatever the dates above. A run still running after its process died is "
               "marked interrupted by the next one.")
    with web.db() as session:
        found = recent_runs(session=session, limit=INDEX_RUNS)
    if not found:
        st.caption("Nothing indexed yet.")
        return
    st.dataframe(web.visible_rows(views.runs_frame(found)), hide_index=True, key="index_runs", column_config={
        "started": st.column_config.DatetimeColumn("Started", format="YYYY-MM-DD HH:mm:ss"),
        "finished": st.column_config.DatetimeColumn("Finished", format="YYYY-MM-DD HH:mm:ss"),
        "collection": "Collection", "status": "Status", "added": "Added", "changed": "Changed",
        "removed": "Removed", "unchanged": "Unchanged", "failed": "Failed", "index_version": "Index version",
        "failures": st.column_config.TextColumn("Why files failed", width="large")})


st.title("Dashboard")
filters, split, weekly = _filters()
overview, spent = _headline_figures(DATABASE, filters)
_headline(overview, sum(s.cost for s in spent))
_by_channel(overview)
# Only the open tab runs its queries (``on_change="rerun"`` makes the tabs lazy).
sections = {
    "Feedback": lambda: _feedback_tab(_feedback_figures(DATABASE, filters, split, weekly, tuple(settings.access.pilot_groups)),
                                      split),
    "Usage and cost": lambda: _usage_tab(_usage_figures(DATABASE, filters), spent, filters),
    "Worst answers": lambda: _answers_tab(filters),
    "Knowledge gaps": lambda: _gaps_tab(filters),
    "Problem reports": lambda: _tickets_tab(filters),
    "Export": lambda: _export_tab(filters),
    "Admin access": lambda: _audit_tab(filters),
    "Index": _index_tab,
    "API keys": _keys_tab,
}
for tab, show in zip(st.tabs(list(sections), key="section", on_change="rerun"), sections.values(), strict=True):
    if tab.open:
        with tab:
            show()
