"""Benchmark the admin dashboard's queries on a year of synthetic usage (SQLite or PostgreSQL).

Fills the database (schema from the Alembic migrations, so the indexes measured
are the ones the migrations create) with users in teams and groups (some in
``pilot``), conversations, question/answer messages spread over ``--days``
days ending today (UTC), ratings on distinct answers, triage entries with
their history, and problem reports; runs ANALYZE; then times every query of
:mod:`feedback.analytics` and :func:`feedback.review.tickets` (warm: one run,
then the best and median of three) for several filter settings, and the CSV
export separately. Queries slower than ``--plan-ms`` get their SQL and query
plan (EXPLAIN QUERY PLAN on SQLite, EXPLAIN ANALYZE on PostgreSQL) in the
output. Prints one JSON object (and writes ``--out``).

    python benchmarks/dashboard.py --out benchmarks/results/dashboard-sqlite.json
    python benchmarks/dashboard.py --database-url postgresql+psycopg://app@127.0.0.1:55433/dashbench \\
        --out benchmarks/results/dashboard-postgresql.json

The data is deterministic (``--seed``). ``--reuse`` skips the filling when the
database already holds data of the requested size. An existing database is
never emptied unless it is the default SQLite file or ``--reset`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from inspect import signature as inspect_signature
from pathlib import Path

from sqlalchemy import JSON, Engine, event, func, insert, inspect, select
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import assistant.manifest  # noqa: F401  (its tables too are dropped by --reset)
from feedback import analytics, review
from feedback.models import Conversation, Message, Rating, Ticket, Triage, TriageEvent, User
from feedback.store import DEFAULT_REASONS
from onboard.db import make_engine, upgrade

DEFAULT_SQLITE = Path(tempfile.gettempdir()) / "onboard-dashboard-bench" / "dashboard.db"
PAGE_LIMIT_MS = 2000
QUERY_LIMIT_MS = 1000

TEAM_NAMES = (
    "engineering-platform", "engineering-apps", "data", "design", "product", "sales-emea", "sales-americas",
    "customer-support", "finance", "people", "legal", "marketing", "security", "it", "operations", "research",
    "customer-success", "procurement", "facilities", "executive",
)
PILOT = "pilot"
#: The model of the "model filter" scenario: the most used model of the last months.
FILTER_MODEL = "gpt-4.1-mini"
PRICES = {
    "gpt-4o-mini": analytics.Price(0.15, 0.60),
    "gpt-4o": analytics.Price(2.50, 10.0),
    "gpt-4.1-mini": analytics.Price(0.40, 1.60),
    "gpt-4.1": analytics.Price(2.00, 8.00),
    "gpt-5-mini": analytics.Price(0.25, 2.00),
}
FEATURE_SETS = (["hybrid-search"], ["hybrid-search", "query-rewrite"], ["query-rewrite"], ["long-context"],
                ["hybrid-search", "long-context"])
TRIAGE_FLOW = ("in_progress", "fixed", "wont_fix", "new")
REASON_WEIGHTS = dict(zip(DEFAULT_REASONS, (30, 25, 15, 10, 10, 5, 5), strict=False))


# --- synthetic text --------------------------------------------------------------------------------------------------

_TOPICS = ("the VPN", "my laptop", "expense reports", "parental leave", "the 401k match", "security training",
           "the code review policy", "on-call", "travel booking", "badge access", "the staging environment",
           "Slack channels", "the benefits portal", "performance reviews", "the style guide", "deploying to prod",
           "time off", "the org chart", "the holiday calendar", "GitHub access", "password resets", "the wiki",
           "payroll", "equipment orders", "remote work", "the incident process", "hiring interviews",
           "the design system", "the data warehouse", "customer escalations")
_ASKS = ("How do I set up {}?", "Who approves {}?", "Where can I find the docs for {}?", "What is the policy on {}?",
         "Is there a deadline for {}?", "Can you explain {} to a new hire?", "What changed recently about {}?",
         "Who do I ask about {} in my first week?", "What are the steps for {} when I work remotely?",
         "Why does {} not work for me?")
_SENTENCES = ("Start from the onboarding checklist in the handbook [1].",
              "Your manager approves the request in the HR portal within two working days [2].",
              "The IT service desk handles hardware and account problems; open a ticket from the portal [1].",
              "Reimbursements are paid with the next payroll run once the receipt is attached [3].",
              "New employees complete the security awareness course in their first month [2].",
              "The policy applies to full-time and part-time employees alike [1].",
              "Ask in the team channel first; the owner of the page is listed at its top [3].",
              "Changes go through code review by at least one other engineer before merging [2].",
              "The on-call rotation starts after your third month, with a shadow week first [1].",
              "Remote employees receive a one-time equipment budget for their home office [3].",
              "Leave requests are entered in the calendar at least two weeks ahead when possible [2].",
              "The handbook page was last reviewed this quarter by the People team [1].")
_COMMENTS = ("This is outdated, the process changed last month.", "Wrong link to the portal.",
             "Did not answer my question.", "Too long, I just needed the deadline.",
             "The cited page is about something else.", "Missing the step for contractors.", "Great, thanks!", "Exactly what I needed.",
             "It says two weeks but HR told me four.", "Please add the contact person.", "Confusing answer.",
             "The answer mixes up the US and EU policies.", "Could not open the source.", "Helpful but incomplete.",
             "This contradicts the wiki.", "Answer was cut off.", "Please cite the actual policy document.")
_ABSTAIN = "I could not find this in the handbook. You may want to ask your manager or the People team."


def _text_pools(rng: random.Random) -> tuple[list[str], list[str], list[list[dict]]]:
    questions = [ask.format(topic) for ask in _ASKS for topic in _TOPICS]
    answers = [" ".join(rng.sample(_SENTENCES, rng.randint(3, 7))) for _ in range(400)]
    sources = []
    for _ in range(300):
        picks = []
        for n in range(1, rng.randint(1, 4) + 1):
            topic = rng.choice(_TOPICS).replace("the ", "").replace(" ", "-")
            picks.append({"n": n, "source": f"handbook/{topic}.md", "title": topic.replace("-", " ").title(),
                          "section": rng.choice(("Overview", "How to", "Policy", "Contacts", "FAQ")),
                          "url": f"https://handbook.example.com/{topic}", "chunk_id": f"{rng.getrandbits(64):016x}"})
        sources.append(picks)
    return questions, answers, sources


# --- filling ---------------------------------------------------------------------------------------------------------


class Writer:
    """Bulk inserts: SQLAlchemy Core executemany of dict batches, or PostgreSQL COPY via psycopg."""

    def __init__(self, engine: Engine, *, copy: bool):
        self.copy = copy
        self.counts: dict[str, int] = {}
        if copy:
            self.raw = engine.raw_connection()
            self.dbapi = self.raw.driver_connection
        else:
            self.conn = engine.connect()
            if engine.dialect.name == "sqlite":  # loading only: this engine is disposed before measuring
                self.conn.exec_driver_sql("PRAGMA synchronous=OFF")
                self.conn.exec_driver_sql("PRAGMA cache_size=-262144")

    def write(self, table, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if not rows:
            return
        self.counts[table.name] = self.counts.get(table.name, 0) + len(rows)
        if self.copy:
            json_at = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, JSON)]
            sql = f'COPY {table.name} ({", ".join(columns)}) FROM STDIN'
            with self.dbapi.cursor() as cursor, cursor.copy(sql) as copy:
                for row in rows:
                    if json_at:
                        row = list(row)
                        for i in json_at:
                            row[i] = json.dumps(row[i])
                    copy.write_row(row)
        else:
            self.conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])

    def commit(self) -> None:
        (self.dbapi if self.copy else self.conn).commit()

    def close(self) -> None:
        self.commit()
        (self.raw if self.copy else self.conn).close()


USER_COLS = ("id", "subject", "email", "name", "groups", "team", "created_at", "last_seen_at")
CONV_COLS = ("id", "user_id", "title", "kind", "created_at", "updated_at", "deleted_at")
MSG_COLS = ("id", "conversation_id", "user_id", "team", "kind", "role", "content", "status", "reply_to", "sources",
            "answerer", "model", "prompt_version", "index_version", "features", "input_tokens", "output_tokens",
            "latency_ms", "ttft_ms", "error", "created_at", "finished_at")
RATING_COLS = ("id", "message_id", "user_id", "thumb", "reasons", "comment", "created_at", "updated_at")
TICKET_COLS = ("id", "user_id", "page", "conversation_id", "message_id", "text", "created_at")
TRIAGE_COLS = ("id", "subject", "subject_id", "status", "owner", "note", "updated_at", "updated_by")
EVENT_COLS = ("id", "triage_id", "at", "by", "old_status", "status", "owner", "note")


def fill(engine: Engine, args, now: datetime, log: Callable[[str], None]) -> dict:
    """Insert the synthetic data; returns seconds per step."""
    rng = random.Random(args.seed)
    questions, answers, source_lists = _text_pools(rng)
    copy = engine.dialect.name == "postgresql" and not args.no_copy
    writer = Writer(engine, copy=copy)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    first_day = now.date() - timedelta(days=args.days - 1)
    year_start = datetime.combine(first_day, dtime.min, tzinfo=UTC)

    # users and teams
    teams = list(TEAM_NAMES[: args.teams]) + [f"team-{i:02d}" for i in range(len(TEAM_NAMES), args.teams)]
    team_weights = [rng.uniform(0.3, 3.0) for _ in teams]
    users, user_team, user_pilot, activity = [], [], [], []
    for uid in range(1, args.users + 1):
        team = rng.choices(teams, team_weights)[0] if rng.random() > 0.02 else "unassigned"
        pilot = rng.random() < 0.10
        groups = {"employees", f"dept-{team}"}
        if pilot:
            groups.add(PILOT)
        if uid <= 5:
            groups.add("admins")
        if rng.random() < 0.1:
            groups.add("managers")
        created = year_start - timedelta(days=rng.uniform(0, 90))
        users.append((uid, f"user-{uid:05d}", f"user{uid}@example.com", f"User {uid}", sorted(groups), team,
                      created, now - timedelta(hours=rng.uniform(0, 24 * 30))))
        user_team.append(team)
        user_pilot.append(pilot)
        activity.append(min(40.0, rng.paretovariate(1.4)) * (2.0 if pilot else 1.0))
    writer.write(User.__table__, USER_COLS, users)
    writer.commit()
    timings["users"] = time.perf_counter() - t0

    # conversations: how many question/answer pairs each, who, when (sorted by start time)
    t1 = time.perf_counter()
    n_pairs = args.messages // 2
    sizes = []
    remaining = n_pairs
    while remaining > 0:
        size = min(remaining, 12, 1 + int(rng.expovariate(1 / 3.6)))  # ~4 pairs: ~messages/8 conversations
        sizes.append(size)
        remaining -= size
    n_conv = len(sizes)
    owners = rng.choices(range(args.users), weights=activity, k=n_conv)
    day_weights = []
    for d in range(args.days):
        weekday = (first_day + timedelta(days=d)).weekday()
        day_weights.append((0.5 + d / max(1, args.days - 1)) * (0.25 if weekday >= 5 else 1.0))
    start_days = rng.choices(range(args.days), weights=day_weights, k=n_conv)
    latest = now - timedelta(hours=3)
    starts = []
    for d in start_days:
        at = year_start + timedelta(days=d, hours=min(23.9, max(0.0, rng.gauss(13, 3))))
        if at > latest:
            at = latest - timedelta(seconds=rng.uniform(0, 6 * 3600))
        starts.append(at)
    plan = sorted(zip(starts, owners, sizes, strict=True))
    rated = set(rng.sample(range(n_pairs), min(args.ratings, n_pairs)))
    ticketed = set(rng.sample(range(n_pairs), min(args.tickets, n_pairs)))

    ratings: list[tuple] = []
    ticket_anchors: list[tuple] = []
    conv_rows: list[tuple] = []
    msg_rows: list[tuple] = []
    mid = pair = flushes = 0
    ms = timedelta(milliseconds=1)
    for start, owner, size in plan:
        uid, team, pilot = owner + 1, user_team[owner], user_pilot[owner]
        cid = f"{rng.getrandbits(128):032x}"
        kind = "support" if rng.random() < 0.08 else "assistant"
        at = start
        title = ""
        for _ in range(size):
            day = (at - year_start).days
            question = rng.choice(questions)
            title = title or question[:80]
            mid += 1
            qid = mid
            msg_rows.append((qid, cid, uid, team, kind, "user", question, "complete", None, [], None, None, None,
                             None, [], None, None, None, None, None, at, None))
            # how the answer was made
            if rng.random() < 0.22:
                answerer, model, prompt = "extractive", None, "extractive-v1"
            else:
                answerer = "llm"
                if pilot and day >= args.days - 90:
                    model = rng.choices(("gpt-5-mini", "gpt-4.1"), (0.6, 0.4))[0]
                elif day < args.days * 0.4:
                    model = rng.choices(("gpt-4o-mini", "gpt-4o"), (0.85, 0.15))[0]
                else:
                    model = rng.choices((FILTER_MODEL, "gpt-4.1", "gpt-4o-mini"), (0.7, 0.15, 0.15))[0]
                prompt = "v1" if day < args.days / 3 else ("v3" if pilot and day >= args.days * 0.7 else "v2")
            if pilot and rng.random() < 0.7:
                features = list(rng.choice(FEATURE_SETS))
            elif day >= args.days - 90 and rng.random() < 0.15:
                features = ["hybrid-search"]
            else:
                features = []
            r = rng.random()
            status = "failed" if r < 0.01 else "interrupted" if r < 0.013 else "abstained" if r < 0.093 else "complete"
            if answerer == "llm":
                latency = int(rng.lognormvariate(math.log(2600), 0.45))
                ttft = int(rng.lognormvariate(math.log(650), 0.4))
                tokens_in, tokens_out = rng.randint(900, 4200), rng.randint(60, 700)
            else:
                latency = int(rng.lognormvariate(math.log(180), 0.4))
                ttft, tokens_in, tokens_out = latency, None, None
            content, sources, error = rng.choice(answers), rng.choice(source_lists), None
            if status == "abstained":
                content, sources = _ABSTAIN, []
            elif status == "failed":
                content, sources, error, ttft = "", [], "The chat model did not answer in time.", None
                latency, tokens_in, tokens_out = 30_000, None, None
            elif status == "interrupted":
                content, sources, error = content[:120], [], "The answer was interrupted before it finished."
                tokens_in, tokens_out = None, None
            answered_at = at + 40 * ms
            finished = answered_at + latency * ms
            mid += 1
            msg_rows.append((mid, cid, uid, team, kind, "assistant", content, status, qid, sources, answerer, model,
                             prompt, 1 + day // 30, features, tokens_in, tokens_out, latency, ttft, error, answered_at,
                             finished))
            if pair in rated:
                p_up = {"complete": 0.86, "abstained": 0.5, "failed": 0.12, "interrupted": 0.2}[status]
                if answerer == "extractive":
                    p_up -= 0.06
                thumb = int(rng.random() < p_up)
                reasons, comment = [], None
                if thumb == 0:
                    k = rng.choices((0, 1, 2), (0.15, 0.6, 0.25))[0]
                    picked = set(rng.choices(list(REASON_WEIGHTS), list(REASON_WEIGHTS.values()), k=k))
                    reasons = [reason for reason in DEFAULT_REASONS if reason in picked]
                    if rng.random() < 0.35:
                        comment = rng.choice(_COMMENTS)
                elif rng.random() < 0.04:
                    comment = rng.choice(_COMMENTS[6:8])
                rated_at = min(now - timedelta(seconds=1), finished + timedelta(seconds=rng.lognormvariate(4, 1.5)))
                updated = rated_at
                if rng.random() < 0.05:
                    updated = min(now, rated_at + timedelta(hours=rng.uniform(0.1, 48)))
                ratings.append((len(ratings) + 1, mid, uid, thumb, reasons, comment, rated_at, updated))
            if pair in ticketed:
                ticket_anchors.append((uid, cid, mid, finished))
            pair += 1
            at = finished + timedelta(seconds=10 + rng.expovariate(1 / 90))
        deleted = None
        if rng.random() < 0.02:
            deleted = min(now, at + timedelta(days=rng.uniform(0, 30)))
        conv_rows.append((cid, uid, title, kind, start - timedelta(seconds=1), at, deleted))
        if len(msg_rows) >= args.batch:
            writer.write(Conversation.__table__, CONV_COLS, conv_rows)
            writer.write(Message.__table__, MSG_COLS, msg_rows)
            writer.commit()
            conv_rows, msg_rows = [], []
            flushes += 1
            if flushes % 20 == 0:
                log(f"  {mid:,} messages, {time.perf_counter() - t1:.0f} s")
    writer.write(Conversation.__table__, CONV_COLS, conv_rows)
    writer.write(Message.__table__, MSG_COLS, msg_rows)
    writer.commit()
    timings["conversations_and_messages"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    for i in range(0, len(ratings), args.batch):
        writer.write(Rating.__table__, RATING_COLS, ratings[i: i + args.batch])
        writer.commit()
    timings["ratings"] = time.perf_counter() - t2

    # problem reports, triage of thumbs down and reports, with history
    t3 = time.perf_counter()
    admins = [1, 2, 3, 4, 5]
    tickets = []
    for tid, (uid, cid, aid, finished) in enumerate(sorted(ticket_anchors, key=lambda a: a[3]), start=1):
        attached = rng.random() < 0.6
        tickets.append((tid, uid, rng.choice(("chat", "chat", "help", "admin")), cid if attached else None,
                        aid if attached else None, rng.choice(_COMMENTS),
                        min(now, finished + timedelta(minutes=rng.uniform(1, 120)))))
    writer.write(Ticket.__table__, TICKET_COLS, tickets)
    downs = [r for r in ratings if r[3] == 0]
    subjects = [("rating", r[0], r[6]) for r in rng.sample(downs, min(args.triage, len(downs)))]
    subjects += [("ticket", t[0], t[6]) for t in rng.sample(tickets, len(tickets) // 2)]
    triage, events = [], []
    for tri_id, (subject, subject_id, since) in enumerate(sorted(subjects, key=lambda s: s[2]), start=1):
        status = rng.choices(TRIAGE_FLOW, (0.2, 0.45, 0.2, 0.15))[0]
        path = {"in_progress": ["in_progress"], "fixed": ["in_progress", "fixed"], "wont_fix": ["wont_fix"],
                "new": ["in_progress", "new"]}[status]
        by, owner = rng.choice(admins), f"user{rng.choice(admins)}@example.com"
        at, old = since, "new"
        for step in path:
            at = min(now, at + timedelta(hours=rng.uniform(1, 24 * 7)))
            events.append((len(events) + 1, tri_id, at, by, old, step, owner, f"Moved to {step}."))
            old = step
        triage.append((tri_id, subject, subject_id, status, owner, f"Moved to {status}.", at, by))
    writer.write(Triage.__table__, TRIAGE_COLS, triage)
    writer.write(TriageEvent.__table__, EVENT_COLS, events)
    writer.close()
    if engine.dialect.name == "postgresql":  # explicit ids were inserted: move the sequences past them
        with engine.begin() as conn:
            for table in ("app_user", "message", "rating", "ticket", "triage", "triage_event"):
                conn.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                     f"(SELECT coalesce(max(id), 1) FROM {table}))")
    timings["tickets_and_triage"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    timings["method"] = "postgresql COPY (psycopg)" if copy else "SQLAlchemy Core insert() executemany"
    return timings


# --- measuring -------------------------------------------------------------------------------------------------------


def _size(result) -> int:
    if isinstance(result, analytics.Choices):
        return sum(len(v) for v in vars(result).values())
    try:
        return len(result)
    except TypeError:
        return 1


def _choices(session: Session, f: analytics.Filters) -> analytics.Choices:
    """The filter choices as the page asks for them: of the period's answers (older code: of every answer)."""
    if "start" in inspect_signature(analytics.choices).parameters:
        return analytics.choices(session, f.kind, start=f.start, end=f.end)
    return analytics.choices(session, f.kind)


def page_queries(cohort: tuple[str, ...]) -> dict[str, Callable]:
    """The dashboard's queries, called with the arguments ``pages/admin.py`` passes.

    The trend is weekly (the page's default "Per week"; per day runs the same
    SQL). ``rating_trend_none`` is the default "Compare by"; cohort and model
    are what an admin picks to compare pilot against everyone, or models.
    """
    a = analytics
    return {
        "choices": _choices,
        "overview": lambda s, f: a.overview(s, f),
        "spend": lambda s, f: a.spend(s, f, PRICES),
        "rating_trend_none": lambda s, f: a.rating_trend(s, f, weekly=True, cohort=cohort),
        "rating_trend_cohort": lambda s, f: a.rating_trend(s, f, split="cohort", weekly=True, cohort=cohort),
        "rating_trend_model": lambda s, f: a.rating_trend(s, f, split="model", weekly=True, cohort=cohort),
        "reason_counts": lambda s, f: a.reason_counts(s, f, DEFAULT_REASONS),
        "comments": lambda s, f: a.comments(s, f, limit=30),
        "daily_usage": lambda s, f: a.daily_usage(s, f),
        "weekly_active_users": lambda s, f: a.weekly_active_users(s, f),
        "latency_by_day": lambda s, f: a.latency_by_day(s, f),
        "triage_counts": lambda s, f: a.triage_counts(s, f),
        "thumbs_down": lambda s, f: a.thumbs_down(s, f, limit=25),
        "thumbs_down_triage_new": lambda s, f: a.thumbs_down(s, f, triage_status="new", limit=25),
        "gap_questions": lambda s, f: a.gap_questions(s, f, limit=1000),
        "tickets": lambda s, f: review.tickets(session=s, since=f.since, until=f.until),
    }


#: What the page runs (``pages/admin.py``: the filters and headline always, then only the open tab's queries).
#: ``first_load`` is the page as it opens (Feedback tab, "Compare by" none); the knowledge gaps tab also
#: embeds and clusters its questions, which is not timed here.
HEADER = ("choices", "overview", "spend")
VIEWS = {
    "first_load": HEADER + ("rating_trend_none", "reason_counts", "comments"),
    "feedback_compare_by_cohort": HEADER + ("rating_trend_cohort", "reason_counts", "comments"),
    "feedback_compare_by_model": HEADER + ("rating_trend_model", "reason_counts", "comments"),
    "usage_and_cost_tab": HEADER + ("daily_usage", "weekly_active_users", "latency_by_day"),
    "worst_answers_tab": HEADER + ("triage_counts", "thumbs_down"),
    "worst_answers_tab_status_new": HEADER + ("triage_counts", "thumbs_down_triage_new"),
    "knowledge_gaps_tab": HEADER + ("gap_questions",),
    "problem_reports_tab": HEADER + ("tickets",),
}
FIRST_LOAD = next(iter(VIEWS))


class Capture:
    """Records the statements the engine sends while on."""

    def __init__(self, engine: Engine):
        self.on = False
        self.statements: list[tuple[str, object]] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if self.on:
            self.statements.append((statement, parameters))


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def time_query(engine: Engine, fn: Callable, f: analytics.Filters, runs: int) -> dict:
    def once():
        with Session(engine) as session:
            started = time.perf_counter()
            result = fn(session, f)
            return time.perf_counter() - started, result

    warm, result = once()
    times = [once()[0] for _ in range(runs)]
    return {"median_ms": _ms(statistics.median(times)), "best_ms": _ms(min(times)), "warmup_ms": _ms(warm),
            "runs_ms": [_ms(t) for t in times], "rows": _size(result)}


def explain(engine: Engine, capture: Capture, fn: Callable, f: analytics.Filters) -> list[dict]:
    """Each statement the query sends: its SQL, its time alone and its plan."""
    capture.statements.clear()
    capture.on = True
    try:
        with Session(engine) as session:
            fn(session, f)
    finally:
        capture.on = False
    out = []
    for statement, params in list(capture.statements):
        with engine.connect() as conn:
            started = time.perf_counter()
            conn.exec_driver_sql(statement, params).fetchall()
            alone = time.perf_counter() - started
            if engine.dialect.name == "postgresql":
                plan = [row[0] for row in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)]
            else:
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).fetchall()
                depth = {0: -1}
                plan = []
                for node, parent, _, detail in rows:
                    depth[node] = depth.get(parent, -1) + 1
                    plan.append("  " * depth[node] + detail)
        out.append({"sql": " ".join(statement.split()), "params": _jsonable(params), "ms": _ms(alone),
                    "plan": plan})
    return out


def _jsonable(params):
    if isinstance(params, dict):
        return {k: _jsonable(v) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return [_jsonable(v) for v in params]
    if isinstance(params, (datetime, date)):
        return params.isoformat()
    return params


def time_export(engine: Engine, f: analytics.Filters) -> dict:
    def once():
        with Session(engine) as session:
            started = time.perf_counter()
            csv_text = review.export_csv(session, f)
            return time.perf_counter() - started, csv_text.count("\n") - 1, len(csv_text)

    first, rows, size = once()
    times = [first]
    if first < 5:
        times += [once()[0] for _ in range(2)]
    return {"median_ms": _ms(statistics.median(times)), "runs_ms": [_ms(t) for t in times], "rows": rows,
            "csv_mb": round(size / 1e6, 1), "peak_rss_mb_after": _rss_mb()}


def code_version() -> dict:
    """The commit measured, and whether the files that shape the queries differ from it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    paths = ["feedback/analytics.py", "feedback/review.py", "feedback/models.py", "onboard/migrations"]

    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes": git("status", "--porcelain", "--", *paths).splitlines()}


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --- database housekeeping ---------------------------------------------------------------------------------------------


def row_counts(engine: Engine) -> dict[str, int]:
    tables = ("app_user", "conversation", "message", "rating", "triage", "triage_event", "ticket")
    with engine.connect() as conn:
        names = set(inspect(conn).get_table_names())
        return {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() if t in names else 0
                for t in tables}


def reset(engine: Engine) -> None:
    """Drop the application's tables (and Alembic's version table): only with ``--reset`` or our own file."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # With foreign keys on, SQLite deletes every row of a dropped table first, and each deleted
            # message looks for its answers through the unindexed reply_to: hours at a million rows.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        SQLModel.metadata.drop_all(conn)
        conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        conn.commit()
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")


def analyze(engine: Engine) -> float:
    started = time.perf_counter()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


def database_info(engine: Engine, url: str) -> dict:
    info = {"dialect": engine.dialect.name, "url": make_url(url).render_as_string(hide_password=True)}
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            info["version"] = conn.exec_driver_sql("SHOW server_version").scalar_one()
            info["size_mb"] = round(conn.exec_driver_sql("SELECT pg_database_size(current_database())")
                                    .scalar_one() / 1e6, 1)
            info["settings"] = {name: conn.exec_driver_sql(f"SHOW {name}").scalar_one() for name in (
                "shared_buffers", "work_mem", "effective_cache_size", "max_parallel_workers_per_gather", "jit",
                "random_page_cost")}
        else:
            info["version"] = conn.exec_driver_sql("SELECT sqlite_version()").scalar_one()
            database = make_url(url).database
            if database and os.path.exists(database):
                info["size_mb"] = round(os.path.getsize(database) / 1e6, 1)
            info["settings"] = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one() for name in (
                "journal_mode", "cache_size", "page_size", "mmap_size")}
        indexes = {}
        inspector = inspect(conn)
        for table in ("message", "rating", "triage", "ticket", "app_user"):
            indexes[table] = sorted(ix["name"] for ix in inspector.get_indexes(table))
        info["indexes"] = indexes
    return info


# --- main ------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=f"sqlite:///{DEFAULT_SQLITE}",
                        help="default: a SQLite file in the temp directory (%(default)s)")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--ratings", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--tickets", type=int, default=1_500)
    parser.add_argument("--triage", type=int, default=3_000, help="thumbs down with a triage entry")
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--batch", type=int, default=10_000, help="rows per insert batch")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per query after the warm-up run")
    parser.add_argument("--no-copy", action="store_true", help="PostgreSQL: Core executemany instead of COPY")
    parser.add_argument("--reuse", action="store_true", help="skip filling if the database holds the data already")
    parser.add_argument("--reset", action="store_true", help="drop the app's tables of a non-empty database first")
    parser.add_argument("--plan-ms", type=float, default=QUERY_LIMIT_MS,
                        help="show SQL and plans of queries whose median is at least this")
    parser.add_argument("--plan-top", type=int, default=3,
                        help="also show SQL and plans of the slowest queries of the default view")
    parser.add_argument("--no-export", action="store_true", help="do not time the CSV export")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    url = args.database_url
    own_file = url == f"sqlite:///{DEFAULT_SQLITE}"
    now = datetime.now(UTC)
    engine = make_engine(url)
    counts = row_counts(engine)
    expected = {"message": args.messages // 2 * 2, "rating": args.ratings, "app_user": args.users}
    fill_timings = None
    if args.reuse and all(counts[t] == n for t, n in expected.items()):
        log(f"reusing the data in {url}: {counts}")
        started = time.perf_counter()
        upgrade(engine)  # the data may predate the latest migrations (new indexes are built on it here)
        log(f"migrations applied in {time.perf_counter() - started:.1f} s")
    else:
        if any(counts.values()) and not (own_file or args.reset):
            sys.exit(f"{url} already holds data {counts}: pass --reuse to measure it or --reset to replace it")
        if own_file and DEFAULT_SQLITE.exists():
            log(f"removing {DEFAULT_SQLITE}")
            engine.dispose()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{DEFAULT_SQLITE}{suffix}").unlink(missing_ok=True)
            engine = make_engine(url)
        elif args.reset:
            log("dropping the existing tables")
            reset(engine)
        upgrade(engine)
        log(f"filling {url}: {args.messages:,} messages, {args.ratings:,} ratings, {args.users:,} users")
        fill_timings = fill(engine, args, now, log)
        log(f"filled in {fill_timings['total']:.1f} s ({fill_timings['method']})")
        engine.dispose()
        engine = make_engine(url)  # a fresh pool: no connection keeps the loading PRAGMAs
    analyze_s = analyze(engine)
    log(f"ANALYZE in {analyze_s:.1f} s")
    counts = row_counts(engine)

    with engine.connect() as conn:
        last = conn.execute(select(func.max(Message.created_at))).scalar_one()
    end = last.date() if isinstance(last, datetime) else date.fromisoformat(str(last)[:10])
    default_start = end - timedelta(days=29)
    scenarios = {
        "default_30d": analytics.Filters(start=default_start, end=end),
        "year": analytics.Filters(start=end - timedelta(days=args.days - 1), end=end),
        "group_pilot_30d": analytics.Filters(start=default_start, end=end, group=PILOT),
        "model_30d": analytics.Filters(start=default_start, end=end, model=FILTER_MODEL),
    }
    queries = page_queries((PILOT,))
    capture = Capture(engine)
    results: dict[str, dict] = {}
    load_before = os.getloadavg()
    for name, f in scenarios.items():
        log(f"scenario {name}: {f.start} .. {f.end}, group={f.group}, model={f.model}")
        timed = {}
        for query, fn in queries.items():
            timed[query] = time_query(engine, fn, f, args.runs)
            log(f"  {query:24s} {timed[query]['median_ms']:9.1f} ms  (best {timed[query]['best_ms']:.1f}, "
                f"{timed[query]['rows']} rows)")
        views = {view: {"median_ms": round(sum(timed[q]["median_ms"] for q in names), 1),
                        "best_ms": round(sum(timed[q]["best_ms"] for q in names), 1), "queries": list(names)}
                 for view, names in VIEWS.items()}
        for view, total in views.items():
            log(f"  page {view}: {total['median_ms']:.1f} ms (best {total['best_ms']:.1f})")
        every = round(sum(q["median_ms"] for q in timed.values()), 1)
        log(f"  every query once: {every:.1f} ms")
        results[name] = {
            "filters": {"start": f.start.isoformat(), "end": f.end.isoformat(), "kind": f.kind, "group": f.group,
                        "model": f.model},
            "queries": timed,
            "page_ms": views,
            "every_query_once_ms": every,
            "slow_queries": sorted(q for q, t in timed.items() if t["median_ms"] >= QUERY_LIMIT_MS),
            "slow_page_views": sorted(v for v, t in views.items() if t["median_ms"] >= PAGE_LIMIT_MS),
        }

    plans = {}
    top = sorted(results["default_30d"]["queries"].items(), key=lambda item: -item[1]["median_ms"])[: args.plan_top]
    for name, result in results.items():
        for query, timing in result["queries"].items():
            if timing["median_ms"] >= args.plan_ms or (name == "default_30d" and query in dict(top)):
                log(f"explaining {name}/{query}")
                plans[f"{name}/{query}"] = explain(engine, capture, queries[query], scenarios[name])
    rss_before_export = _rss_mb()

    exports = {}
    if not args.no_export:
        for name in ("default_30d", "year"):
            log(f"export_csv {name}")
            exports[name] = time_export(engine, scenarios[name])
            log(f"  {exports[name]['median_ms']:.1f} ms, {exports[name]['rows']} rows, {exports[name]['csv_mb']} MB")

    default = results["default_30d"]
    report = {
        "benchmark": "dashboard",
        "measured_at": now.isoformat(timespec="seconds"),
        "database": database_info(engine, url),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "parameters": {k: getattr(args, k) for k in ("messages", "ratings", "users", "teams", "days", "tickets",
                                                      "triage", "seed", "batch", "runs")},
        "row_counts": counts,
        "fill_seconds": None if fill_timings is None else
        {k: (round(v, 1) if isinstance(v, float) else v) for k, v in fill_timings.items()},
        "analyze_seconds": round(analyze_s, 1),
        "limits_ms": {"query": QUERY_LIMIT_MS, "page": PAGE_LIMIT_MS},
        "code": code_version(),
        "page": {
            "note": "a page view = the sum of the medians of the queries it runs (pages/admin.py: filter choices "
                    "and headline always, then the open tab's queries only); uncached (the page caches them "
                    "60-600 s); the knowledge gaps tab also embeds and clusters the questions (not timed); "
                    "the CSV export is not part of the page",
            "views": {view: list(names) for view, names in VIEWS.items()},
            "default_first_load_ms": default["page_ms"][FIRST_LOAD],
            "default_first_load_within_limit": default["page_ms"][FIRST_LOAD]["median_ms"] < PAGE_LIMIT_MS,
            "default_slow_views": default["slow_page_views"],
            "default_slow_queries": default["slow_queries"],
            "default_every_query_once_ms": default["every_query_once_ms"],
        },
        "scenarios": results,
        "export_csv": exports,
        "plans": plans,
        "peak_rss_mb": _rss_mb(),
        "peak_rss_mb_before_export": rss_before_export,
    }
    output = json.dumps(report, indent=1)
    print(output)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(output + "\n")


if __name__ == "__main__":
    main()
