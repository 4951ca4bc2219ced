"""The admin dashboard's figures and review tools, checked against hand-computed numbers.

Every test runs on SQLite and, with TEST_DATABASE_URL, on PostgreSQL (the
``engine`` fixture's ``database_url`` parametrisation). On PostgreSQL the
connections use a time zone 14 hours away from UTC, so a figure that cuts days
or weeks in the session's time zone instead of UTC shows up as a wrong number.

The data (``world``), period ``F`` = Wed 2024-03-06 .. Tue 2024-03-12 (two ISO
weeks: Monday 2024-03-04 and Monday 2024-03-11):

users (team when asking; groups)
  alice  sales    [pilot, staff]
  bob    eng      [pilot-2, staff]             pilot-2: "pilot" is a prefix of it
  carol  eng      [100-pct, data_ops]          moved to team "research" after asking
  dave   support  [100%, dataXops, équipe]     "100%" and "data_ops" must not match like LIKE wildcards
  ada    it       [admin]                      the admin; never asks

answers (time UTC; user/conversation; answerer, model, prompt, features; status; tokens in/out; latency/ttft)
(channel web unless said: a4 and a8 came through the API, a7 from a batch file, a12 is the support bot's)
  a9   03-05 23:59:59  alice/c1  llm gpt-a p1 [hybrid]           complete   50/10   900/100
  a1   03-06 00:00:00  alice/c1  llm gpt-a p1 [hybrid]           complete  100/50  1000/200
  a2   03-06 09:00     alice/c1  llm gpt-a p1 [hybrid, rerank]   complete  300/100 3000/400
  a3   03-07 12:00     bob/c2    extractive - extractive-v1 []   abstained   -/-    150/-
  a4   03-10 23:30     bob/c2    llm gpt-b p2 [hybrid-rerank]    complete  200/80  2000/300
  a5   03-11 00:30     carol/c3  llm gpt-a p2 [fast_path]        failed      -/-   5000/-
  a6   03-11 10:00     carol/c3  llm gpt-a p1 [fastXpath]        complete  400/120 4000/500  (retry of a5's question)
  a8   03-12 15:00     bob/c5    llm gpt-c p2 [hybrid]           complete 1000/500 2500/250
  a7   03-12 23:59:59  dave/c4   extractive - extractive-v1 []   abstained   -/-    100/-
  a10  03-13 00:00:00  bob/c6    llm gpt-b p2 []                 complete   70/20   800/80
  a11  03-11 11:00     carol/c3  llm gpt-d p3 [beta]             pending (never counted)
  a12  03-08 10:00     dave/support conversation, support-bot gpt-s  complete 10/5 (kind "support")

ratings (by the asker; created, updated when different)
  a9   down [incorrect] "old"                              03-05 23:59:59.5
  a1   up   "Great answer"                                 03-06 10:00, updated 03-12 18:00
  a2   down [incorrect, outdated, wrong_sources] "@channel wrong numbers"  03-07 08:00
  a3   down (no reason, no comment)                        03-07 12:05
  a4   up   "Helpful"                                      03-10 23:45 (a Sunday, late)
  a5   down [other] "It broke"                             03-11 01:00
  a8   up                                                  03-12 16:00
  a6   up   "Thanks"                                       03-13 01:00 (after the period)
  a10  up                                                  03-13 00:10
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, update
from sqlmodel import Session

from assistant.answer import Citation
from assistant.evaluation import Case, load_dataset
from feedback import analytics, review, store
from feedback.analytics import Filters, Price, Share
from feedback.models import Message, Rating, User, utcnow


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, micro, tzinfo=UTC)


D = {day: date(2024, 3, day) for day in range(1, 20)}
W1, W2 = date(2024, 3, 4), date(2024, 3, 11)  # the Mondays of the two ISO weeks
F = Filters(start=D[6], end=D[12])

PASSAGE = (
    "Full-time employees\nget 25 days of paid time off per calendar year,   accrued monthly, and may carry "
    "over up to five unused days into the first quarter of the next year with approval from their manager."
)
A1_SOURCES = [
    asdict(Citation(1, "benefits/overview.md", "Benefits", "", None, "c-ben", "Benefits start at once.", cited=False)),
    asdict(Citation(2, "time-off/time-off.md", "Time off", "PTO", None, "c-pto-1", PASSAGE)),
    asdict(Citation(3, "time-off/time-off.md", "Time off", "Carry-over", None, "c-pto-2", "Carry over five days.")),
    asdict(Citation(4, "handbook/holidays.md", "Holidays", "", "https://wiki/holidays", "c-hol", "Ten holidays.")),
]
A4_SOURCES = [
    asdict(Citation(1, "benefits/overview.md", "Benefits", "Health", None, "c-health",
                    "Health insurance starts on day one.")),
]


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture
def session(engine):
    if engine.dialect.name == "postgresql":
        @event.listens_for(engine, "connect")
        def _far_from_utc(dbapi_connection, _record):  # UTC+14: days cut in local time would be off by one
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SET TIME ZONE 'Pacific/Kiritimati'")
            dbapi_connection.commit()
    else:
        @event.listens_for(engine, "connect")
        def _no_fsync(dbapi_connection, _record):  # a throwaway file: ~100 commits per test, without an fsync each
            dbapi_connection.execute("PRAGMA synchronous=OFF")

    engine.dispose()  # the connections the migrations made are opened again, with the setting above
    with Session(engine) as session:
        yield session


@dataclass
class World:
    users: dict[str, User] = field(default_factory=dict)
    conversations: dict[str, str] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    questions: dict[str, int] = field(default_factory=dict)
    ratings: dict[str, int] = field(default_factory=dict)


def _move(session, model, row_id: int, **times) -> None:
    session.execute(update(model).where(model.id == row_id).values(**times))
    session.commit()


def _turn(session, world: World, name: str, user: str, conversation: str, question: str | None, *, when: datetime,
          answerer: str, model=None, prompt_version=None, features=(), status="complete", content="An answer.",
          sources=(), input_tokens=None, output_tokens=None, latency_ms=None, ttft_ms=None, retry_of=None,
          channel=None):
    """A question (or the question of ``retry_of``) and its answer, the answer written at ``when``."""
    owner = world.users[user]
    if retry_of is None:
        q = store.add_user_message(session=session, user=owner, conversation_id=world.conversations[conversation],
                                   content=question, channel=channel)
        world.questions[name] = q.id
        _move(session, Message, q.id, created_at=when - timedelta(milliseconds=500))
    else:
        world.questions[name] = world.questions[retry_of]
    answer = store.start_answer(session=session, question_id=world.questions[name], answerer=answerer, model=model,
                                prompt_version=prompt_version, features=features)
    if status == "failed":
        store.fail_answer(session=session, answer_id=answer.id, error="The model timed out.", latency_ms=latency_ms,
                          ttft_ms=ttft_ms)
    elif status in ("complete", "abstained"):
        store.finish_answer(session=session, answer_id=answer.id, content=content, sources=sources,
                            input_tokens=input_tokens, output_tokens=output_tokens, latency_ms=latency_ms,
                            ttft_ms=ttft_ms, abstained=status == "abstained")
    world.answers[name] = answer.id
    _move(session, Message, answer.id, created_at=when)


def _rate(session, world: World, name: str, thumb: int, when: datetime, *, reasons=(), comment=None,
          updated: datetime | None = None):
    user = session.get(User, session.get(Message, world.answers[name]).user_id)
    rating = store.rate(session=session, user=user, message_id=world.answers[name], thumb=thumb, reasons=reasons,
                        comment=comment)
    world.ratings[name] = rating.id
    _move(session, Rating, rating.id, created_at=when, updated_at=updated or when)


@pytest.fixture
def world(session) -> World:
    w = World()
    people = {
        "alice": ("Alice", "sales", ["staff", "pilot"]),
        "bob": ("Bob", "eng", ["pilot-2", "staff"]),
        "carol": ("Carol", "eng", ["data_ops", "100-pct"]),
        "dave": ("Dave", "support", ["dataXops", "100%", "équipe"]),
        "ada": ("Ada", "it", ["admin"]),
    }
    for subject, (name, team, groups) in people.items():
        w.users[subject] = store.get_or_create_user(session=session, subject=subject, email=f"{subject}@example.com",
                                                    name=name, groups=groups, team=team)
    for conversation, owner in (("c1", "alice"), ("c2", "bob"), ("c3", "carol"), ("c4", "dave"), ("c5", "bob"),
                                ("c6", "bob")):
        w.conversations[conversation] = store.create_conversation(session=session, user=w.users[owner]).id
    w.conversations["support"] = store.create_conversation(session=session, user=w.users["dave"], kind="support").id

    llm = {"answerer": "llm"}
    _turn(session, w, "a9", "alice", "c1", "Old question about PTO?", when=at(5, 23, 59, 59), **llm, model="gpt-a",
          prompt_version="p1", features=["hybrid"], input_tokens=50, output_tokens=10, latency_ms=900, ttft_ms=100)
    _turn(session, w, "a1", "alice", "c1", "How many PTO days do I get?", when=at(6), **llm, model="gpt-a",
          prompt_version="p1", features=["hybrid"], content="25 days a year [2].", sources=A1_SOURCES,
          input_tokens=100, output_tokens=50, latency_ms=1000, ttft_ms=200)
    _turn(session, w, "a2", "alice", "c1", "=1+1 days of PTO carried over?", when=at(6, 9), **llm, model="gpt-a",
          prompt_version="p1", features=["hybrid", "rerank"], content="-5 days.", input_tokens=300,
          output_tokens=100, latency_ms=3000, ttft_ms=400)
    _turn(session, w, "a3", "bob", "c2", "Where is the parking garage?", when=at(7, 12), answerer="extractive",
          prompt_version="extractive-v1", status="abstained", content="The handbook does not say.",
          latency_ms=150)
    _turn(session, w, "a4", "bob", "c2", "When does health insurance start?", when=at(10, 23, 30), **llm,
          model="gpt-b", prompt_version="p2", features=["hybrid-rerank"], content="On day one [1].",
          sources=A4_SOURCES, input_tokens=200, output_tokens=80, latency_ms=2000, ttft_ms=300, channel="api")
    _turn(session, w, "a5", "carol", "c3", "How do I file expenses?", when=at(11, 0, 30), **llm, model="gpt-a",
          prompt_version="p2", features=["fast_path"], status="failed", latency_ms=5000)
    _turn(session, w, "a6", "carol", "c3", None, retry_of="a5", when=at(11, 10), **llm, model="gpt-a",
          prompt_version="p1", features=["fastXpath"], content="Use the expenses tool.", input_tokens=400,
          output_tokens=120, latency_ms=4000, ttft_ms=500)
    _turn(session, w, "a11", "carol", "c3", "Pending question?", when=at(11, 11), **llm, model="gpt-d",
          prompt_version="p3", features=["beta"], status="pending")
    _turn(session, w, "a8", "bob", "c5", "Who approves my PTO?", when=at(12, 15), **llm, model="gpt-c",
          prompt_version="p2", features=["hybrid"], content="Your manager.", input_tokens=1000, output_tokens=500,
          latency_ms=2500, ttft_ms=250, channel="api")
    _turn(session, w, "a7", "dave", "c4", "What is the wifi password?", when=at(12, 23, 59, 59),
          answerer="extractive", prompt_version="extractive-v1", status="abstained", content="I don't know.",
          latency_ms=100, channel="batch")
    _turn(session, w, "a10", "bob", "c6", "Late question?", when=at(13), **llm, model="gpt-b", prompt_version="p2",
          content="Late answer.", input_tokens=70, output_tokens=20, latency_ms=800, ttft_ms=80)
    _turn(session, w, "a12", "dave", "support", "My laptop is broken", when=at(8, 10), answerer="support-bot",
          model="gpt-s", prompt_version="s1", content="Call IT.", input_tokens=10, output_tokens=5, latency_ms=700,
          ttft_ms=70)

    _rate(session, w, "a9", 0, at(5, 23, 59, 59, 500_000), reasons=["incorrect"], comment="old")
    _rate(session, w, "a1", 1, at(6, 10), comment="Great answer", updated=at(12, 18))
    _rate(session, w, "a2", 0, at(7, 8), reasons=["incorrect", "outdated", "wrong_sources"],
          comment="@channel wrong numbers")
    _rate(session, w, "a3", 0, at(7, 12, 5))
    _rate(session, w, "a4", 1, at(10, 23, 45), comment="Helpful")
    _rate(session, w, "a5", 0, at(11, 1), reasons=["other"], comment="It broke")
    _rate(session, w, "a8", 1, at(12, 16))
    _rate(session, w, "a6", 1, at(13, 1), comment="Thanks")
    _rate(session, w, "a10", 1, at(13, 0, 10))

    # Carol changes team after asking: her answers stay with the team that asked them.
    w.users["carol"] = store.get_or_create_user(session=session, subject="carol", email="carol@example.com",
                                                name="Carol", groups=["data_ops", "100-pct"], team="research")
    session.expire_all()
    return w


def _ids(world: World, *names: str) -> list[int]:
    return [world.answers[name] for name in names]


# --- overview and filters ------------------------------------------------------------------------------------------


def test_overview_of_the_period(session, world):
    o = analytics.overview(session, F)

    # in the period: a1 a2 a3 a4 a5 a6 a7 a8 (a9 a second too early, a10 a second too late, a11 pending, a12 support)
    assert o.answers == 8
    assert o.conversations == 5  # c1 c2 c3 c4 c5
    assert o.questions == 7  # a5 and a6 answer the same question
    assert o.users == 4  # alice bob carol dave
    assert o.abstained == 2  # a3 a7
    assert o.failed == 1  # a5
    assert o.input_tokens == 2000  # 100 + 300 + 200 + 400 + 1000
    assert o.output_tokens == 850  # 50 + 100 + 80 + 120 + 500
    # latencies 100 150 1000 2000 2500 3000 4000 5000: p50 rank ceil(.5*8)=4, p95 rank ceil(.95*8)=8
    assert (o.latency_p50, o.latency_p95) == (2000, 5000)
    # ttft 200 250 300 400 500: p50 rank ceil(2.5)=3, p95 rank ceil(4.75)=5
    assert (o.ttft_p50, o.ttft_p95) == (300, 500)
    assert o.ratings == Share(up=3, down=3)  # rated in the period: a1 a4 a8 up, a2 a3 a5 down
    assert o.questions_per_user == pytest.approx(7 / 4)
    assert o.abstention_rate == pytest.approx(2 / 8)
    # questions, answers, people per channel, in the order of CHANNELS; no support (another kind)
    assert [(c.channel, c.questions, c.answers, c.users) for c in o.by_channel] == [
        ("web", 4, 5, 3), ("api", 2, 2, 1), ("batch", 1, 1, 1)]
    assert sum(c.answers for c in o.by_channel) == o.answers


def test_the_split_by_channel_follows_the_other_filters(session, world):
    assert analytics.overview(session, Filters(D[6], D[12], team="research")).by_channel == ()
    assert [(c.channel, c.answers) for c in analytics.channel_split(session, Filters(D[6], D[12], team="eng"))] == [
        ("web", 3), ("api", 2)]  # a3 a5 a6, a4 a8
    support = analytics.channel_split(session, Filters(D[1], D[19], kind="support"))
    assert support == [analytics.ChannelUsage("support", 1, 1, 1)]
    trend = analytics.series_shares(analytics.rating_trend(session, F, split="channel"))
    assert trend == {"api": Share(up=2, down=0), "web": Share(up=1, down=3)}


def test_overview_of_an_empty_selection(session, world):
    o = analytics.overview(session, Filters(start=D[6], end=D[12], team="research"))  # carol moved there later

    assert (o.answers, o.questions, o.users, o.conversations, o.input_tokens, o.output_tokens) == (0, 0, 0, 0, 0, 0)
    assert (o.latency_p50, o.latency_p95, o.ttft_p50, o.ttft_p95) == (None, None, None, None)
    assert o.ratings == Share(0, 0)
    assert o.questions_per_user is None
    assert o.abstention_rate is None


def test_a_small_percentile_is_nearest_rank(session, world):
    # one day, 03-06: latencies 1000 3000 -> p50 rank ceil(1)=1 -> 1000 (not the mean 2000), p95 rank 2 -> 3000
    o = analytics.overview(session, Filters(start=D[6], end=D[6]))
    assert (o.latency_p50, o.latency_p95, o.ttft_p50, o.ttft_p95) == (1000, 3000, 200, 400)


FILTER_CASES = {
    # name: (filters, (answers, questions, users, input_tokens, thumbs up, thumbs down))
    "start day from midnight": (Filters(start=D[6], end=D[6]), (2, 2, 1, 400, 1, 0)),  # a1 a2; a2 rated 03-07
    "end day until midnight": (Filters(start=D[12], end=D[12]), (2, 2, 2, 1000, 1, 0)),  # a8 a7; a8 rated 03-12
    "the day before": (Filters(start=D[5], end=D[5]), (1, 1, 1, 50, 0, 1)),  # a9, its rating at 23:59:59.5
    # a10 at 00:00:00; ratings given that day: a10 and a6 (a6 answered on 03-11, rated on 03-13)
    "the day after": (Filters(start=D[13], end=D[13]), (1, 1, 1, 70, 2, 0)),
    "group pilot": (Filters(D[6], D[12], group="pilot"), (2, 2, 1, 400, 1, 1)),  # alice only, not bob's pilot-2
    "group pilot-2": (Filters(D[6], D[12], group="pilot-2"), (3, 3, 1, 1200, 2, 1)),  # bob: a3 a4 a8
    "group staff": (Filters(D[6], D[12], group="staff"), (5, 5, 2, 1600, 3, 2)),  # alice + bob
    "group data_ops": (Filters(D[6], D[12], group="data_ops"), (2, 1, 1, 400, 0, 1)),  # carol, not dave's dataXops
    "group 100%": (Filters(D[6], D[12], group="100%"), (1, 1, 1, 0, 0, 0)),  # dave, not carol's 100-pct
    "group équipe": (Filters(D[6], D[12], group="équipe"), (1, 1, 1, 0, 0, 0)),  # dave: JSON escapes non-ASCII
    "group nobody has": (Filters(D[6], D[12], group="pil"), (0, 0, 0, 0, 0, 0)),
    # eng when asked: a3 a4 a8 (bob) a5 a6 (carol); questions q3 q4 q5 q8; 0+200+0+400+1000
    "team eng": (Filters(D[6], D[12], team="eng"), (5, 4, 2, 1600, 2, 2)),
    "team support": (Filters(D[6], D[12], team="support"), (1, 1, 1, 0, 0, 0)),  # a7
    "answerer extractive": (Filters(D[6], D[12], answerer="extractive"), (2, 2, 2, 0, 0, 1)),  # a3 a7
    "model gpt-a": (Filters(D[6], D[12], model="gpt-a"), (4, 3, 2, 800, 1, 2)),  # a1 a2 a5 a6
    "prompt p2": (Filters(D[6], D[12], prompt_version="p2"), (3, 3, 2, 1200, 2, 1)),  # a4 a5 a8
    "feature hybrid": (Filters(D[6], D[12], feature="hybrid"), (3, 3, 2, 1400, 2, 1)),  # a1 a2 a8, not a4
    "feature rerank": (Filters(D[6], D[12], feature="rerank"), (1, 1, 1, 300, 0, 1)),  # a2, not a4's hybrid-rerank
    "feature hybrid-rerank": (Filters(D[6], D[12], feature="hybrid-rerank"), (1, 1, 1, 200, 1, 0)),  # a4
    "feature fast_path": (Filters(D[6], D[12], feature="fast_path"), (1, 1, 1, 0, 0, 1)),  # a5, not a6's fastXpath
    "feature fast%": (Filters(D[6], D[12], feature="fast%"), (0, 0, 0, 0, 0, 0)),
    "team eng and model gpt-a": (Filters(D[6], D[12], team="eng", model="gpt-a"), (2, 1, 1, 400, 0, 1)),  # a5 a6
    "kind support": (Filters(D[6], D[12], kind="support"), (1, 1, 1, 10, 0, 0)),  # a12
    "channel api": (Filters(D[6], D[12], channel="api"), (2, 2, 1, 1200, 2, 0)),  # bob's a4 a8
    "channel batch": (Filters(D[6], D[12], channel="batch"), (1, 1, 1, 0, 0, 0)),  # a7
    # a1 a2 a3 a5 a6 (a5 and a6 answer one question); rated in the period: a1 up, a2 a3 a5 down
    "channel web": (Filters(D[6], D[12], channel="web"), (5, 4, 3, 800, 1, 3)),
    "channel support of the assistant": (Filters(D[6], D[12], channel="support"), (0, 0, 0, 0, 0, 0)),
    "kind and channel support": (Filters(D[6], D[12], kind="support", channel="support"), (1, 1, 1, 10, 0, 0)),
    "team eng and channel api": (Filters(D[6], D[12], team="eng", channel="api"), (2, 2, 1, 1200, 2, 0)),
    "group data_ops and channel api": (Filters(D[6], D[12], group="data_ops", channel="api"), (0, 0, 0, 0, 0, 0)),
}


def test_each_filter_selects_the_right_answers_and_ratings(session, world):
    got = {}
    for name, (filters, _) in FILTER_CASES.items():
        o = analytics.overview(session, filters)
        got[name] = (o.answers, o.questions, o.users, o.input_tokens, o.ratings.up, o.ratings.down)
    assert got == {name: expected for name, (_, expected) in FILTER_CASES.items()}


def test_the_group_and_feature_filters_apply_to_the_lists_too(session, world):
    # The same conditions reach every figure: the thumbs down and the gaps of carol's group only.
    carol = Filters(D[6], D[12], group="data_ops")
    assert [r.message_id for r in analytics.thumbs_down(session, carol)] == _ids(world, "a5")
    assert [g.message_id for g in analytics.gap_questions(session, carol)] == _ids(world, "a5")
    hybrid = Filters(D[6], D[12], feature="hybrid")
    assert [d.day for d in analytics.daily_usage(session, hybrid)] == [D[6], D[12]]  # a1 a2, a8


# --- ratings -------------------------------------------------------------------------------------------------------


def _points(points):
    return [(p.period, p.series, p.share.up, p.share.down) for p in points]


def test_rating_trend_per_day_and_week(session, world):
    assert _points(analytics.rating_trend(session, F)) == [
        (D[6], "all", 1, 0),  # a1
        (D[7], "all", 0, 2),  # a2 (answered 03-06, rated 03-07), a3
        (D[10], "all", 1, 0),  # a4 at 23:45 on Sunday
        (D[11], "all", 0, 1),  # a5
        (D[12], "all", 1, 0),  # a8 (a1's update on 03-12 does not move it)
    ]
    assert _points(analytics.rating_trend(session, F, weekly=True)) == [
        (W1, "all", 2, 2),  # a1 a4 up, a2 a3 down: Sunday 03-10 still belongs to the week of 03-04
        (W2, "all", 1, 1),  # a8 up, a5 down
    ]


def test_rating_trend_split_per_model_daily(session, world):
    assert _points(analytics.rating_trend(session, F, split="model")) == [
        (D[6], "gpt-a", 1, 0),
        (D[7], "(none)", 0, 1),  # a3, extractive: no model
        (D[7], "gpt-a", 0, 1),  # a2
        (D[10], "gpt-b", 1, 0),
        (D[11], "gpt-a", 0, 1),
        (D[12], "gpt-c", 1, 0),
    ]


SPLITS_WEEKLY = {
    "model": [(W1, "(none)", 0, 1), (W1, "gpt-a", 1, 1), (W1, "gpt-b", 1, 0),
              (W2, "gpt-a", 0, 1), (W2, "gpt-c", 1, 0)],
    "prompt_version": [(W1, "extractive-v1", 0, 1), (W1, "p1", 1, 1), (W1, "p2", 1, 0),  # a3 | a1 a2 | a4
                       (W2, "p2", 1, 1)],  # a8 a5
    "answerer": [(W1, "extractive", 0, 1), (W1, "llm", 2, 1), (W2, "llm", 1, 1)],
    "team": [(W1, "eng", 1, 1), (W1, "sales", 1, 1), (W2, "eng", 1, 1)],  # a3 a4 | a1 a2 | a5 a8
    "features": [(W1, "(no feature)", 0, 1), (W1, "hybrid", 1, 0), (W1, "hybrid, rerank", 0, 1),
                 (W1, "hybrid-rerank", 1, 0), (W2, "fast_path", 0, 1), (W2, "hybrid", 1, 0)],
}


def test_rating_trend_weekly_for_each_split(session, world):
    got = {split: _points(analytics.rating_trend(session, F, split=split, weekly=True)) for split in SPLITS_WEEKLY}
    assert got == SPLITS_WEEKLY


def test_rating_trend_split_per_cohort(session, world):
    # cohort "pilot" = alice (a1 up, a2 down); bob's "pilot-2" is not in it
    assert _points(analytics.rating_trend(session, F, split="cohort", weekly=True, cohort=["pilot"])) == [
        (W1, "cohort", 1, 1), (W1, "everyone else", 1, 1), (W2, "everyone else", 1, 1),
    ]
    # cohort "pilot" or "data_ops" = alice and carol (a5 down); bob's a8 stays outside
    assert _points(analytics.rating_trend(session, F, split="cohort", weekly=True, cohort=["pilot", "data_ops"])) == [
        (W1, "cohort", 1, 1), (W1, "everyone else", 1, 1), (W2, "cohort", 0, 1), (W2, "everyone else", 1, 0),
    ]
    assert _points(analytics.rating_trend(session, F, split="cohort", weekly=True, cohort=[])) == [
        (W1, "everyone else", 2, 2), (W2, "everyone else", 1, 1),
    ]
    with pytest.raises(ValueError):
        analytics.rating_trend(session, F, split="colour")


def test_series_shares_total_each_series(session, world):
    assert analytics.series_shares(analytics.rating_trend(session, F)) == {"all": Share(3, 3)}
    assert analytics.series_shares(analytics.rating_trend(session, F, split="model")) == {
        "(none)": Share(0, 1), "gpt-a": Share(1, 2), "gpt-b": Share(1, 0), "gpt-c": Share(1, 0),
    }
    assert list(analytics.series_shares(analytics.rating_trend(session, F, split="model"))) == [
        "(none)", "gpt-a", "gpt-b", "gpt-c"]
    assert analytics.rating_share(session, F) == Share(3, 3)


def test_reason_counts_count_thumbs_down_of_the_period(session, world):
    # thumbs down rated in the period: a2 [incorrect outdated wrong_sources], a3 [], a5 [other]; a9's is too early
    assert analytics.reason_counts(session, F, store.DEFAULT_REASONS) == {
        "incorrect": 1, "incomplete": 0, "outdated": 1, "wrong_sources": 1, "unclear": 0, "too_long": 0, "other": 1,
    }
    # a tag that is a prefix of a stored one, or would match it as a LIKE pattern, counts nothing
    assert analytics.reason_counts(session, F, ["wrong_source", "wrong%", "outdate", "incorrect"]) == {
        "wrong_source": 0, "wrong%": 0, "outdate": 0, "incorrect": 1,
    }
    assert analytics.reason_counts(session, Filters(D[5], D[13]), ["incorrect"]) == {"incorrect": 2}  # + a9
    assert analytics.reason_counts(session, F, []) == {}


def test_comments_latest_first(session, world):
    got = analytics.comments(session, F)
    # rated in the period with a comment; by updated_at: a1 (edited 03-12 18:00), a5, a4, a2
    assert [(c.message_id, c.comment, c.thumb) for c in got] == [
        (world.answers["a1"], "Great answer", 1),
        (world.answers["a5"], "It broke", 0),
        (world.answers["a4"], "Helpful", 1),
        (world.answers["a2"], "@channel wrong numbers", 0),
    ]
    first = got[0]
    assert first.rating_id == world.ratings["a1"]
    assert first.conversation_id == world.conversations["c1"]
    assert first.at == at(12, 18)
    assert got[3].reasons == ["incorrect", "outdated", "wrong_sources"]
    assert [c.message_id for c in analytics.comments(session, F, limit=2)] == _ids(world, "a1", "a5")


# --- usage, cost, latency ------------------------------------------------------------------------------------------


def test_daily_usage(session, world):
    got = [(u.day, u.questions, u.conversations, u.users, u.answers, u.abstained, u.input_tokens, u.output_tokens)
           for u in analytics.daily_usage(session, F)]
    assert got == [
        (D[6], 2, 1, 1, 2, 0, 400, 150),  # a1 a2 (alice, c1)
        (D[7], 1, 1, 1, 1, 1, 0, 0),  # a3
        (D[10], 1, 1, 1, 1, 0, 200, 80),  # a4 at 23:30
        (D[11], 1, 1, 1, 2, 0, 400, 120),  # a5 failed + a6 retry: one question, two answers
        (D[12], 2, 2, 2, 2, 1, 1000, 500),  # a8 (bob, c5) and a7 at 23:59:59 (dave, c4)
    ]


def test_weekly_active_users_keyed_by_monday(session, world):
    assert analytics.weekly_active_users(session, F) == {W1: 2, W2: 3}  # alice bob | carol bob dave
    assert analytics.weekly_active_users(session, Filters(D[1], D[19])) == {W1: 2, W2: 3}  # a9 alice, a10 bob
    assert analytics.weekly_active_users(session, Filters(D[10], D[10])) == {W1: 1}  # Sunday: bob's a4


def test_spend_per_day_team_and_model(session, world):
    prices = {"gpt-a": Price(input=3.0, output=15.0), "gpt-b": Price(input=10.0, output=30.0)}
    got = [(s.day, s.team, s.model, s.input_tokens, s.output_tokens, s.cost)
           for s in analytics.spend(session, F, prices)]
    assert sorted(got) == [
        (D[6], "sales", "gpt-a", 400, 150, pytest.approx(0.00345)),  # (400*3 + 150*15) / 1e6
        (D[7], "eng", "(none)", 0, 0, 0.0),  # a3, extractive
        (D[10], "eng", "gpt-b", 200, 80, pytest.approx(0.0044)),  # (200*10 + 80*30) / 1e6
        (D[11], "eng", "gpt-a", 400, 120, pytest.approx(0.003)),  # a5 + a6, still team eng: (400*3 + 120*15) / 1e6
        (D[12], "eng", "gpt-c", 1000, 500, 0.0),  # no price for gpt-c: costs nothing
        (D[12], "support", "(none)", 0, 0, 0.0),  # a7
    ]
    assert [s.day for s in analytics.spend(session, F, prices)] == [D[6], D[7], D[10], D[11], D[12], D[12]]
    assert Price(input=2.0, output=4.0).cost(1_000_000, 500_000) == pytest.approx(4.0)
    assert Price().cost(123, 456) == 0


def test_latency_by_day_nearest_rank(session, world):
    got = [(p.day, p.latency_p50, p.latency_p95, p.ttft_p50, p.ttft_p95) for p in analytics.latency_by_day(session, F)]
    assert got == [
        (D[6], 1000, 3000, 200, 400),  # 1000 3000: ranks ceil(1)=1, ceil(1.9)=2; ttft 200 400
        (D[7], 150, 150, None, None),  # a3: no first token
        (D[10], 2000, 2000, 300, 300),
        (D[11], 4000, 5000, 500, 500),  # 4000 (a6) 5000 (a5); ttft only a6's
        (D[12], 100, 2500, 250, 250),  # 100 (a7) 2500 (a8)
    ]


# --- thumbs down, triage, gaps, choices ----------------------------------------------------------------------------


def test_thumbs_down_explained_first_then_newest(session, world):
    got = analytics.thumbs_down(session, F)
    # a5 (reason + comment, 03-11), a2 (reasons + comment, 03-07 08:00), then a3 (nothing said, though later: 12:05)
    assert [r.message_id for r in got] == _ids(world, "a5", "a2", "a3")
    a2 = got[1]
    assert a2.rating_id == world.ratings["a2"]
    assert a2.conversation_id == world.conversations["c1"]
    assert (a2.question, a2.answer, a2.status) == ("=1+1 days of PTO carried over?", "-5 days.", "complete")
    assert (a2.answerer, a2.model, a2.prompt_version) == ("llm", "gpt-a", "p1")
    assert (a2.thumb, a2.reasons, a2.comment) == (0, ["incorrect", "outdated", "wrong_sources"],
                                                  "@channel wrong numbers")
    assert a2.rated_at == at(7, 8)
    assert (a2.triage_status, a2.triage_owner, a2.triage_note) == ("new", "", "")
    a3 = got[2]
    assert (a3.status, a3.reasons, a3.comment, a3.sources) == ("abstained", [], None, [])
    assert [r.message_id for r in analytics.thumbs_down(session, F, limit=1, offset=1)] == _ids(world, "a2")
    assert analytics.triage_counts(session, F) == {"new": 3}


def test_thumbs_down_by_triage_status(session, world):
    ada = world.users["ada"]
    review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a2"],
                      status="in_progress", owner="ada", note="checking the policy")
    review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a9"], status="fixed")

    assert [r.message_id for r in analytics.thumbs_down(session, F, triage_status="in_progress")] == _ids(world, "a2")
    assert [r.message_id for r in analytics.thumbs_down(session, F, triage_status="new")] == _ids(world, "a5", "a3")
    assert analytics.thumbs_down(session, F, triage_status="fixed") == []  # a9's is before the period
    row, = analytics.thumbs_down(session, F, triage_status="in_progress")
    assert (row.triage_status, row.triage_owner, row.triage_note) == ("in_progress", "ada", "checking the policy")
    assert analytics.triage_counts(session, F) == {"new": 2, "in_progress": 1}
    assert analytics.triage_counts(session, Filters(D[5], D[12])) == {"new": 2, "in_progress": 1, "fixed": 1}


def test_gap_questions_are_abstentions_and_thumbs_down(session, world):
    got = analytics.gap_questions(session, F)
    # answered in the period, newest first: a7 abstained, a5 down, a3 abstained and down, a2 down (not a9: too early)
    assert [(g.message_id, g.question, g.abstained) for g in got] == [
        (world.answers["a7"], "What is the wifi password?", True),
        (world.answers["a5"], "How do I file expenses?", False),
        (world.answers["a3"], "Where is the parking garage?", True),
        (world.answers["a2"], "=1+1 days of PTO carried over?", False),
    ]
    assert got[0].at == at(12, 23, 59, 59)
    assert got[0].conversation_id == world.conversations["c4"]
    assert [g.message_id for g in analytics.gap_questions(session, F, limit=1)] == _ids(world, "a7")


def test_choices_list_what_is_stored(session, world):
    c = analytics.choices(session)
    assert c.answerers == ["extractive", "llm"]  # not the support bot
    assert c.models == ["gpt-a", "gpt-b", "gpt-c", "gpt-d"]  # gpt-d from the pending answer
    assert c.prompt_versions == ["extractive-v1", "p1", "p2", "p3"]
    assert c.features == ["beta", "fastXpath", "fast_path", "hybrid", "hybrid-rerank", "rerank"]
    assert c.teams == ["eng", "it", "research", "sales", "support"]  # users' current teams
    assert c.groups == ["100%", "100-pct", "admin", "dataXops", "data_ops", "pilot", "pilot-2", "staff", "équipe"]
    assert c.channels == ["api", "batch", "web"]
    support = analytics.choices(session, kind="support")
    assert (support.answerers, support.models, support.prompt_versions) == (["support-bot"], ["gpt-s"], ["s1"])
    assert support.channels == ["support"]


def test_wilson_interval():
    low, high = analytics.wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=5e-4)
    assert high == pytest.approx(0.9433, abs=5e-4)
    assert analytics.wilson(0, 0) is None
    assert analytics.wilson(0, 5)[0] == 0.0
    assert analytics.wilson(5, 5)[1] == 1.0
    assert Share(3, 3).share == 0.5
    low, high = Share(3, 3).interval
    assert low + high == pytest.approx(1.0)  # symmetric around 1/2
    assert (Share(0, 0).n, Share(0, 0).share, Share(0, 0).interval) == (0, None, None)


def test_days_and_weeks_helpers():
    assert analytics.monday(D[10]) == W1  # Sunday
    assert analytics.monday(D[11]) == W2
    assert (F.since, F.until) == (at(6), at(13))


# --- review: triage --------------------------------------------------------------------------------------------------


def test_set_triage_records_each_change_with_who_made_it(session, world):
    ada, rating_id = world.users["ada"], world.ratings["a2"]

    entry = review.set_triage(session=session, actor=ada, subject="rating", subject_id=rating_id,
                              status="in_progress", owner="  ada  ", note="looking")
    assert (entry.status, entry.owner, entry.note, entry.updated_by) == ("in_progress", "ada", "looking", ada.id)
    again = review.set_triage(session=session, actor=ada, subject="rating", subject_id=rating_id,
                              status="in_progress", owner="ada", note="looking")  # identical: no event
    assert again.id == entry.id
    bob = world.users["bob"]
    review.set_triage(session=session, actor=bob, subject="rating", subject_id=rating_id, status="fixed",
                      owner="ada", note="policy page updated")

    history = review.triage_history(session=session, subject="rating", subject_id=rating_id)
    assert [(h.by, h.old_status, h.status, h.owner, h.note) for h in history] == [
        ("Ada", "new", "in_progress", "ada", "looking"),
        ("Bob", "in_progress", "fixed", "ada", "policy page updated"),
    ]
    assert history[0].at <= history[1].at
    assert review.triage_history(session=session, subject="rating", subject_id=world.ratings["a3"]) == []


def test_saving_an_untriaged_thumbs_down_unchanged_records_no_event(session, world):
    # The review form shows an untriaged thumbs down as "new", no owner, no note; pressing Save without
    # touching it changes nothing, so, as for any identical re-save, no "new -> new" event is recorded.
    review.set_triage(session=session, actor=world.users["ada"], subject="rating", subject_id=world.ratings["a3"],
                      status="new")

    assert review.triage_history(session=session, subject="rating", subject_id=world.ratings["a3"]) == []
    assert analytics.triage_counts(session, F) == {"new": 3}


def test_set_triage_refuses_what_cannot_be_triaged(session, world):
    ada = world.users["ada"]
    with pytest.raises(store.InvalidInput):
        review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a2"],
                          status="done")
    with pytest.raises(store.InvalidInput):  # a thumbs up
        review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a1"],
                          status="fixed")
    with pytest.raises(store.InvalidInput):
        review.set_triage(session=session, actor=ada, subject="message", subject_id=world.ratings["a2"],
                          status="fixed")
    with pytest.raises(store.NotFound):
        review.set_triage(session=session, actor=ada, subject="rating", subject_id=999_999, status="fixed")
    with pytest.raises(store.NotFound):
        review.set_triage(session=session, actor=ada, subject="ticket", subject_id=999_999, status="fixed")
    with pytest.raises(store.InvalidInput):
        review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a2"],
                          status="fixed", note="x" * (review.MAX_NOTE_CHARS + 1))
    assert review.triage_history(session=session, subject="rating", subject_id=world.ratings["a2"]) == []
    assert analytics.triage_counts(session, F) == {"new": 3}


# --- review: problem reports -----------------------------------------------------------------------------------------


def test_report_problem_attaches_only_the_reporters_own_conversation(session, world):
    alice, bob = world.users["alice"], world.users["bob"]
    with pytest.raises(store.InvalidInput):
        review.report_problem(session=session, user=bob, text="   \n ")
    with pytest.raises(store.InvalidInput):
        review.report_problem(session=session, user=bob, text="x" * (review.MAX_TICKET_CHARS + 1))

    others_conversation = review.report_problem(session=session, user=bob, text="Broken", page="chat",
                                                conversation_id=world.conversations["c1"])
    others_message = review.report_problem(session=session, user=bob, text="Wrong", message_id=world.answers["a1"])
    own_message = review.report_problem(session=session, user=bob, text="  Odd answer  ", page="chat",
                                        message_id=world.answers["a4"])
    mixed = review.report_problem(session=session, user=bob, text="Mixed", conversation_id=world.conversations["c5"],
                                  message_id=world.answers["a2"])
    theirs_with_mine = review.report_problem(session=session, user=bob, text="Sneaky",
                                             conversation_id=world.conversations["c1"],
                                             message_id=world.answers["a4"])

    assert (others_conversation.conversation_id, others_conversation.message_id) == (None, None)
    assert (others_message.conversation_id, others_message.message_id) == (None, None)
    assert (own_message.conversation_id, own_message.message_id, own_message.text, own_message.page) == (
        world.conversations["c2"], world.answers["a4"], "Odd answer", "chat")
    assert (mixed.conversation_id, mixed.message_id) == (world.conversations["c5"], None)
    assert (theirs_with_mine.conversation_id, theirs_with_mine.message_id) == (None, None)
    assert alice.id != bob.id


def test_tickets_newest_first_and_by_status(session, world):
    alice, ada = world.users["alice"], world.users["ada"]
    first = review.report_problem(session=session, user=alice, text="The page is slow", page="chat")
    second = review.report_problem(session=session, user=alice, text="Wrong link", page="help",
                                   conversation_id=world.conversations["c1"])
    review.set_triage(session=session, actor=ada, subject="ticket", subject_id=first.id, status="fixed",
                      owner="ada", note="cache added")

    rows = review.tickets(session=session)
    assert [(t.id, t.reporter, t.email, t.page, t.text, t.status) for t in rows] == [
        (second.id, "Alice", "alice@example.com", "help", "Wrong link", "new"),
        (first.id, "Alice", "alice@example.com", "chat", "The page is slow", "fixed"),
    ]
    assert rows[0].conversation_id == world.conversations["c1"]
    assert [(t.id, t.owner, t.note) for t in review.tickets(session=session, status="fixed")] == [
        (first.id, "ada", "cache added")]
    assert [t.id for t in review.tickets(session=session, status="new")] == [second.id]
    assert review.tickets(session=session, status="wont_fix") == []
    assert [t.id for t in review.tickets(session=session, limit=1)] == [second.id]
    later = utcnow() + timedelta(hours=1)
    assert review.tickets(session=session, since=later) == []
    assert [t.id for t in review.tickets(session=session, until=later)] == [second.id, first.id]
    history = review.triage_history(session=session, subject="ticket", subject_id=first.id)
    assert [(h.by, h.old_status, h.status) for h in history] == [("Ada", "new", "fixed")]
    # a ticket's triage is not a rating's: the thumbs down figures do not see it
    assert analytics.triage_counts(session, F) == {"new": 3}


# --- review: reading a conversation ----------------------------------------------------------------------------------


def test_conversation_for_admin_shows_messages_with_the_owners_ratings(session, world):
    # a rating by someone else (the store never makes one, the table allows it) is not the owner's: not shown
    session.add(Rating(message_id=world.answers["a1"], user_id=world.users["ada"].id, thumb=0, reasons=["other"],
                       comment="not the owner"))
    session.commit()

    conversation = review.conversation_for_admin(session=session, admin=world.users["ada"],
                                                 conversation_id=world.conversations["c1"])

    assert (conversation.id, conversation.owner, conversation.team, conversation.kind, conversation.deleted) == (
        world.conversations["c1"], "Alice", "sales", "assistant", False)
    assert conversation.title == "Old question about PTO?"
    # in time order: a9 (asked last but dated 03-05) comes first
    assert [(m.id, m.role, m.thumb, m.reasons, m.comment) for m in conversation.messages] == [
        (world.questions["a9"], "user", None, [], None),
        (world.answers["a9"], "assistant", 0, ["incorrect"], "old"),
        (world.questions["a1"], "user", None, [], None),
        (world.answers["a1"], "assistant", 1, [], "Great answer"),
        (world.questions["a2"], "user", None, [], None),
        (world.answers["a2"], "assistant", 0, ["incorrect", "outdated", "wrong_sources"], "@channel wrong numbers"),
    ]
    a1 = conversation.messages[3]
    assert (a1.content, a1.status, a1.answerer, a1.model, a1.sources) == (
        "25 days a year [2].", "complete", "llm", "gpt-a", A1_SOURCES)
    assert a1.created_at == at(6)


def test_conversation_for_admin_reads_deleted_conversations_and_refuses_unknown_ones(session, world):
    store.delete_conversation(session=session, user=world.users["carol"], conversation_id=world.conversations["c3"])
    conversation = review.conversation_for_admin(session=session, admin=world.users["ada"],
                                                 conversation_id=world.conversations["c3"])
    assert conversation.deleted is True
    assert conversation.team == "research"  # the owner's team now
    assert [(m.id, m.status, m.thumb, m.attempt) for m in conversation.messages] == [
        (world.questions["a5"], "complete", None, 0),
        (world.answers["a5"], "failed", 0, 1),
        (world.answers["a6"], "complete", 1, 2),  # regenerated after the failure
        (world.questions["a11"], "complete", None, 0),
        (world.answers["a11"], "pending", None, 1),
    ]
    with pytest.raises(store.NotFound):
        review.conversation_for_admin(session=session, admin=world.users["ada"], conversation_id="nope")


# --- review: exports -------------------------------------------------------------------------------------------------


def test_export_csv_round_trips_and_defuses_formulas(session, world):
    rows = list(csv.DictReader(io.StringIO(review.export_csv(session, F))))

    assert list(rows[0]) == list(review.CSV_FIELDS)
    # every answer of the period, oldest first (a8 at 15:00 before a7 at 23:59:59)
    assert [int(r["answer_id"]) for r in rows] == _ids(world, "a1", "a2", "a3", "a4", "a5", "a6", "a8", "a7")
    a2 = rows[1]
    assert a2 == {
        "answer_id": str(world.answers["a2"]),
        "conversation_id": world.conversations["c1"],
        "asked_at": "2024-03-06T09:00:00+00:00",
        "team": "sales",
        "question": "'=1+1 days of PTO carried over?",  # a spreadsheet would compute it
        "answer": "'-5 days.",
        "status": "complete",
        "sources": "[]",
        "answerer": "llm",
        "model": "gpt-a",
        "prompt_version": "p1",
        "features": '["hybrid", "rerank"]',
        "input_tokens": "300",
        "output_tokens": "100",
        "latency_ms": "3000",
        "ttft_ms": "400",
        "thumb": "0",
        "reasons": '["incorrect", "outdated", "wrong_sources"]',
        "comment": "'@channel wrong numbers",
    }
    a1 = rows[0]
    assert json.loads(a1["sources"]) == A1_SOURCES
    assert (a1["thumb"], a1["comment"], a1["reasons"]) == ("1", "Great answer", "[]")
    a3 = rows[2]  # abstained, extractive: no model, no tokens
    assert (a3["status"], a3["model"], a3["input_tokens"], a3["ttft_ms"], a3["thumb"], a3["comment"]) == (
        "abstained", "", "", "", "0", "")
    a5 = rows[4]
    assert (a5["status"], a5["latency_ms"], a5["features"]) == ("failed", "5000", '["fast_path"]')
    a6 = rows[5]  # rated after the period: the export lists answers, and shows their rating
    assert (a6["question"], a6["thumb"], a6["comment"]) == ("How do I file expenses?", "1", "Thanks")
    a7 = rows[7]
    assert (a7["asked_at"], a7["team"], a7["thumb"]) == ("2024-03-12T23:59:59+00:00", "support", "")

    eng = list(csv.DictReader(io.StringIO(review.export_csv(session, Filters(D[6], D[12], team="eng")))))
    assert [int(r["answer_id"]) for r in eng] == _ids(world, "a3", "a4", "a5", "a6", "a8")
    empty = review.export_csv(session, Filters(D[6], D[12], team="research"))
    assert list(csv.reader(io.StringIO(empty))) == [list(review.CSV_FIELDS)]


def _cases(tmp_path, text: str) -> list[Case]:
    path = tmp_path / "reviewed.jsonl"
    path.write_text(text, encoding="utf-8")
    return load_dataset(path)


def test_export_eval_jsonl_makes_reviewed_cases(session, world, tmp_path):
    a1, a3, a4 = (world.answers[name] for name in ("a1", "a3", "a4"))
    quote = ("Full-time employees get 25 days of paid time off per calendar year, accrued monthly, and may carry "
             "over up to five unused days into the")  # the first 25 words, spaces collapsed

    # rated in the period: a1 up + sources, a4 up + sources -> cases; a2 a5 down, a3 down (not triaged),
    # a8 up without sources -> left out
    text = review.export_eval_jsonl(session, F)
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines == [
        {"id": f"reviewed-{a1}", "question": "How many PTO days do I get?", "answer": "25 days a year [2].",
         # benefits/overview.md is shown but not cited; time-off.md cited twice
         "gold_files": ["time-off/time-off.md", "handbook/holidays.md"], "gold_quote": quote, "kind": "reviewed"},
        {"id": f"reviewed-{a4}", "question": "When does health insurance start?", "answer": "On day one [1].",
         "gold_files": ["benefits/overview.md"], "gold_quote": "Health insurance starts on day one.",
         "kind": "reviewed"},
    ]
    assert text.endswith("\n")

    ada = world.users["ada"]
    review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a3"], status="wont_fix")
    review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a2"], status="wont_fix")
    review.set_triage(session=session, actor=ada, subject="rating", subject_id=world.ratings["a5"], status="fixed")
    cases = _cases(tmp_path, review.export_eval_jsonl(session, F))
    assert cases == [
        Case(f"reviewed-{a1}", "How many PTO days do I get?", ("time-off/time-off.md", "handbook/holidays.md"),
             (quote,)),
        # a3: abstained, thumbs down, won't fix -> a question the documents do not answer, on purpose
        Case(f"reviewed-{a3}", "Where is the parking garage?", (), ()),
        Case(f"reviewed-{a4}", "When does health insurance start?", ("benefits/overview.md",),
             ("Health insurance starts on day one.",)),
    ]
    assert [case.answerable for case in cases] == [True, False, True]  # a2 (complete, won't fix) is not a case

    assert [c.id for c in _cases(tmp_path, review.export_eval_jsonl(session, Filters(D[6], D[12], model="gpt-b")))] \
        == [f"reviewed-{a4}"]
    assert review.export_eval_jsonl(session, Filters(D[6], D[12], team="research")) == ""
    assert json.loads(review.export_eval_jsonl(session, F, quote_words=3).splitlines()[0])["gold_quote"] == \
        "Full-time employees get"
