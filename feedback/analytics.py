"""The admin dashboard's figures, each one SQL aggregate over answers and ratings.

Every function takes a :class:`Filters` and returns small plain rows: the
database does the counting (``count``, ``sum``, window functions for
percentiles), never Python over every message, so the figures stay fast at a
million messages on SQLite and PostgreSQL alike. Python only finishes what is
already small: confidence intervals, weeks made of days, cost from token sums.

Answers are the unit: a question is counted through its answer, so every
filter (model, prompt version, rollout feature...) applies to every figure
alike. Days are UTC days. Percentiles are nearest-rank. An answer's channel
(the page, the API, a batch file, the support bot) is its question's, so the
channel filter and the split by channel count questions through their answers
too.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import String, Text, and_, case, cast, false, func, literal, or_, select
from sqlalchemy.orm import aliased
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from feedback.models import CHANNELS, Message, Rating, Triage, User

#: Statuses that count as an answer given (``pending`` is still being written).
FINAL = ("complete", "abstained", "failed", "interrupted")
#: z for a 95% interval.
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Filters:
    """What the admin is looking at. ``end`` is included; ``None`` means "any"."""

    start: date
    end: date
    kind: str = "assistant"
    #: Only people in this group (a pilot cohort, a department...).
    group: str | None = None
    team: str | None = None
    answerer: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    #: Only answers given with this rollout feature on.
    feature: str | None = None
    #: Only answers that came in through this channel (``web``, ``api``, ``batch``, ``support``).
    channel: str | None = None

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=UTC)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=UTC)


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input + output_tokens * self.output) / 1_000_000


@dataclass(frozen=True)
class Share:
    """Thumbs up among ratings, with a 95% Wilson interval."""

    up: int
    down: int

    @property
    def n(self) -> int:
        return self.up + self.down

    @property
    def share(self) -> float | None:
        return self.up / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.up, self.n)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (sound for small counts and shares near 0 or 1)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


# --- building blocks -----------------------------------------------------------------------------------------------


def _json_list_contains(column, value: str) -> ColumnElement[bool]:
    """Whether a JSON list column holds ``value``: a LIKE on its text, which both databases index alike.

    Lists are written by :func:`json.dumps`, so an element appears exactly as
    ``json.dumps(value)``, quotes included; LIKE's wildcards are escaped.
    """
    needle = json.dumps(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(column, Text).like(f"%{needle}%", escape="\\")


def _in_group(group: str) -> ColumnElement[bool]:
    return Message.user_id.in_(select(User.id).where(_json_list_contains(User.groups, group)))


def answer_conditions(f: Filters, *, dated: bool = True) -> list[ColumnElement[bool]]:
    """Answers matching the filters (given in the period unless ``dated`` is false)."""
    conditions = [Message.kind == f.kind, Message.role == "assistant", Message.status.in_(FINAL)]
    if dated:
        conditions += [Message.created_at >= f.since, Message.created_at < f.until]
    if f.group:
        conditions.append(_in_group(f.group))
    if f.team:
        conditions.append(Message.team == f.team)
    if f.answerer:
        conditions.append(Message.answerer == f.answerer)
    if f.model:
        conditions.append(Message.model == f.model)
    if f.prompt_version:
        conditions.append(Message.prompt_version == f.prompt_version)
    if f.feature:
        conditions.append(_json_list_contains(Message.features, f.feature))
    if f.channel:
        conditions.append(Message.channel == f.channel)
    return conditions


def rating_conditions(f: Filters) -> list[ColumnElement[bool]]:
    """Ratings given in the period, on answers that match the other filters."""
    return [Rating.created_at >= f.since, Rating.created_at < f.until, *answer_conditions(f, dated=False)]


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def day_of(session: Session, column) -> ColumnElement:
    """The UTC day of a timestamp column."""
    if _dialect(session) == "postgresql":
        return func.date(func.timezone("UTC", column))
    return func.date(column)


def week_of(session: Session, column) -> ColumnElement:
    """The Monday (UTC) of a timestamp column's ISO week."""
    if _dialect(session) == "postgresql":
        return func.date(func.date_trunc("week", func.timezone("UTC", column)))
    return func.date(column, "weekday 0", "-6 days")


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _nearest_rank(session: Session, column, conditions: Sequence, quantiles: Sequence[float], bucket=None) -> list:
    """Nearest-rank percentiles of ``column`` per ``bucket`` (or overall): ``[(bucket, q1, q2, ...)]``.

    PostgreSQL's ``percentile_disc`` is the nearest-rank percentile. SQLite has
    no ordered-set aggregate: overall, it counts each distinct value (a few
    thousand milliseconds values at most) and the rank is found in that
    histogram; per bucket, each row is ranked with window functions.
    """
    key = bucket if bucket is not None else literal(0)
    if _dialect(session) == "postgresql":  # the same nearest-rank value, in one pass instead of a window sort
        picks = [func.percentile_disc(q).within_group(column).label(f"q{i}") for i, q in enumerate(quantiles)]
        query = select(key.label("bucket"), *picks).where(*conditions, column.is_not(None)).group_by(key)
        return [row for row in session.execute(query.order_by(key)).all() if row[1] is not None]
    if bucket is None:  # overall: count each distinct value in SQL, then walk the (small) histogram
        histogram = session.execute(
            select(column, func.count()).where(*conditions, column.is_not(None)).group_by(column).order_by(column)
        ).all()
        return [(0, *(_rank_in(histogram, q) for q in quantiles))] if histogram else []
    ranked = (
        select(
            key.label("bucket"),
            column.label("value"),
            func.row_number().over(partition_by=key, order_by=column).label("rn"),
            func.count().over(partition_by=key).label("cnt"),
        )
        .where(*conditions, column.is_not(None))
        .subquery()
    )
    picks = [func.min(case((ranked.c.rn >= q * ranked.c.cnt, ranked.c.value))).label(f"q{i}")
             for i, q in enumerate(quantiles)]
    query = select(ranked.c.bucket, *picks).group_by(ranked.c.bucket).order_by(ranked.c.bucket)
    return list(session.execute(query).all())


def _rank_in(histogram: Sequence[tuple[int, int]], q: float):
    """The nearest-rank ``q`` quantile of sorted ``(value, count)`` pairs: the first value whose cumulative
    count reaches ``q × n``."""
    target = q * sum(count for _, count in histogram)
    seen = 0
    for value, count in histogram:
        seen += count
        if seen >= target:
            return value
    return histogram[-1][0]


# --- figures ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    conversations: int
    questions: int
    answers: int
    users: int
    abstained: int
    #: Answers in the middle band: the closest passages quoted under a warning that they may not answer.
    unsure: int
    failed: int
    input_tokens: int
    output_tokens: int
    ratings: Share
    latency_p50: int | None
    latency_p95: int | None
    ttft_p50: int | None
    ttft_p95: int | None
    #: Questions and answers per channel, channels without any left out.
    by_channel: tuple[ChannelUsage, ...] = ()

    @property
    def questions_per_user(self) -> float | None:
        return self.questions / self.users if self.users else None

    @property
    def abstention_rate(self) -> float | None:
        return self.abstained / self.answers if self.answers else None

    @property
    def unsure_rate(self) -> float | None:
        return self.unsure / self.answers if self.answers else None


def overview(session: Session, f: Filters) -> Overview:
    """The headline figures of the period (on PostgreSQL, counts and percentiles in one scan)."""
    conditions = answer_conditions(f)
    postgres = _dialect(session) == "postgresql"
    percentiles = [func.percentile_disc(q).within_group(column)
                   for column in (Message.latency_ms, Message.ttft_ms) for q in (0.5, 0.95)] if postgres else []
    row = session.execute(
        select(
            func.count(func.distinct(Message.conversation_id)),
            func.count(func.distinct(Message.reply_to)),
            func.count(),
            func.count(func.distinct(Message.user_id)),
            func.coalesce(func.sum(case((Message.status == "abstained", 1), else_=0)), 0),
            _unsure_count(),
            func.coalesce(func.sum(case((Message.status.in_(("failed", "interrupted")), 1), else_=0)), 0),
            func.coalesce(func.sum(Message.input_tokens), 0),
            func.coalesce(func.sum(Message.output_tokens), 0),
            *percentiles,
        ).where(*conditions)
    ).one()
    counts, timings = row[:9], tuple(row[9:])
    if not postgres:
        (_, *latency), = _nearest_rank(session, Message.latency_ms, conditions, (0.5, 0.95)) or [(0, None, None)]
        (_, *ttft), = _nearest_rank(session, Message.ttft_ms, conditions, (0.5, 0.95)) or [(0, None, None)]
        timings = (*latency, *ttft)
    lat50, lat95, ttft50, ttft95 = (None if t is None else int(t) for t in timings)
    return Overview(*map(int, counts), ratings=rating_share(session, f), latency_p50=lat50, latency_p95=lat95,
                    ttft_p50=ttft50, ttft_p95=ttft95, by_channel=tuple(channel_split(session, f)))


@dataclass(frozen=True)
class ChannelUsage:
    """How much came in through one channel: questions, their answers (a retried question has several), people."""

    channel: str
    questions: int
    answers: int
    users: int


def channel_split(session: Session, f: Filters) -> list[ChannelUsage]:
    """Questions, answers and people per channel (one ``GROUP BY``), in the order of :data:`CHANNELS`."""
    rows = session.execute(
        select(Message.channel, func.count(func.distinct(Message.reply_to)), func.count(),
               func.count(func.distinct(Message.user_id)))
        .where(*answer_conditions(f)).group_by(Message.channel)
    ).all()
    order = {channel: i for i, channel in enumerate(CHANNELS)}
    return sorted((ChannelUsage(channel, int(q), int(a), int(u)) for channel, q, a, u in rows),
                  key=lambda usage: (order.get(usage.channel, len(order)), usage.channel))


def rating_share(session: Session, f: Filters) -> Share:
    up, n = session.execute(
        select(func.coalesce(func.sum(Rating.thumb), 0), func.count())
        .select_from(Rating).join(Message, Message.id == Rating.message_id)
        .where(*rating_conditions(f))
    ).one()
    return Share(up=int(up), down=int(n) - int(up))


@dataclass(frozen=True)
class TrendPoint:
    period: date
    series: str
    share: Share


#: How a trend can be split: a column of the answer, or the cohort (members of a group or not).
SPLITS = ("none", "model", "prompt_version", "answerer", "team", "cohort", "features", "channel")


def rating_trend(
    session: Session, f: Filters, *, split: str = "none", weekly: bool = False, cohort: Iterable[str] = ()
) -> list[TrendPoint]:
    """Thumbs up share per day (or ISO week), optionally one series per model, prompt, cohort...

    ``cohort`` names the groups whose members form the cohort (the pilot
    groups); everyone else is the other series.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}")
    series = _series(split, cohort)
    day = day_of(session, Rating.created_at)
    rows = session.execute(
        select(day, series, func.sum(Rating.thumb), func.count())
        .select_from(Rating).join(Message, Message.id == Rating.message_id)
        .where(*rating_conditions(f))
        .group_by(day, series)
    ).all()
    counts: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0])
    for raw_day, label, up, n in rows:
        period = _as_date(raw_day)
        if weekly:
            period = monday(period)
        label = _series_label(split, label)
        counts[(period, label)][0] += int(up)
        counts[(period, label)][1] += int(n)
    return [TrendPoint(period, label, Share(up=up, down=n - up)) for (period, label), (up, n) in sorted(counts.items())]


def _series(split: str, cohort: Iterable[str]) -> ColumnElement:
    if split == "none":
        return literal("all", String)
    if split == "cohort":
        groups = [g for g in cohort if g]
        member = or_(*[_in_group(g) for g in groups]) if groups else false()
        return case((member, literal("cohort", String)), else_=literal("everyone else", String))
    if split == "features":
        return cast(Message.features, Text)
    return func.coalesce(getattr(Message, split), literal("(none)", String))


def _series_label(split: str, value) -> str:
    if split == "features":
        features = json.loads(value) if value else []
        return ", ".join(features) if features else "(no feature)"
    return str(value)


def series_shares(points: Iterable[TrendPoint]) -> dict[str, Share]:
    """Totals per series over all periods."""
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for point in points:
        totals[point.series][0] += point.share.up
        totals[point.series][1] += point.share.down
    return {label: Share(up=up, down=down) for label, (up, down) in sorted(totals.items())}


def reason_counts(session: Session, f: Filters, reasons: Sequence[str]) -> dict[str, int]:
    """How many thumbs down carry each reason tag (a rating may carry several)."""
    if not reasons:
        return {}
    columns = [func.coalesce(func.sum(case((_json_list_contains(Rating.reasons, r), 1), else_=0)), 0)
               for r in reasons]
    row = session.execute(
        select(*columns).select_from(Rating).join(Message, Message.id == Rating.message_id)
        .where(*rating_conditions(f), Rating.thumb == 0)
    ).one()
    return {reason: int(count) for reason, count in zip(reasons, row, strict=True)}


@dataclass(frozen=True)
class Comment:
    rating_id: int
    message_id: int
    conversation_id: str
    thumb: int
    reasons: list[str]
    comment: str
    at: datetime


def comments(session: Session, f: Filters, *, limit: int = 50) -> list[Comment]:
    """The latest comments left with ratings."""
    rows = session.execute(
        select(Rating.id, Rating.message_id, Message.conversation_id, Rating.thumb, Rating.reasons, Rating.comment,
               Rating.updated_at)
        .select_from(Rating).join(Message, Message.id == Rating.message_id)
        .where(*rating_conditions(f), Rating.comment.is_not(None), Rating.comment != "")
        .order_by(Rating.updated_at.desc()).limit(limit)
    ).all()
    return [Comment(*row) for row in rows]


@dataclass(frozen=True)
class DailyUsage:
    day: date
    questions: int
    conversations: int
    users: int
    answers: int
    abstained: int
    unsure: int
    input_tokens: int
    output_tokens: int


def _unsure_count():
    """How many answers fell in the middle band (counted apart from abstentions)."""
    return func.coalesce(func.sum(case((Message.band == "unsure", 1), else_=0)), 0)


def daily_usage(session: Session, f: Filters) -> list[DailyUsage]:
    day = day_of(session, Message.created_at)
    rows = session.execute(
        select(
            day,
            func.count(func.distinct(Message.reply_to)),
            func.count(func.distinct(Message.conversation_id)),
            func.count(func.distinct(Message.user_id)),
            func.count(),
            func.coalesce(func.sum(case((Message.status == "abstained", 1), else_=0)), 0),
            _unsure_count(),
            func.coalesce(func.sum(Message.input_tokens), 0),
            func.coalesce(func.sum(Message.output_tokens), 0),
        ).where(*answer_conditions(f)).group_by(day).order_by(day)
    ).all()
    return [DailyUsage(_as_date(row[0]), *map(int, row[1:])) for row in rows]


def weekly_active_users(session: Session, f: Filters) -> dict[date, int]:
    """Distinct people who asked something, per ISO week (Monday)."""
    week = week_of(session, Message.created_at)
    rows = session.execute(
        select(week, func.count(func.distinct(Message.user_id))).where(*answer_conditions(f))
        .group_by(week).order_by(week)
    ).all()
    return {_as_date(w): int(n) for w, n in rows}


@dataclass(frozen=True)
class Spend:
    day: date
    team: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: float


def spend(session: Session, f: Filters, prices: Mapping[str, Price]) -> list[Spend]:
    """Tokens and cost per day, team and model (models without a price cost nothing)."""
    day = day_of(session, Message.created_at)
    model = func.coalesce(Message.model, literal("(none)", String))
    rows = session.execute(
        select(day, Message.team, model, func.coalesce(func.sum(Message.input_tokens), 0),
               func.coalesce(func.sum(Message.output_tokens), 0))
        .where(*answer_conditions(f)).group_by(day, Message.team, model).order_by(day, Message.team, model)
    ).all()
    result = []
    for raw_day, team, model_name, tokens_in, tokens_out in rows:
        price = price_for(model_name, prices)
        result.append(Spend(_as_date(raw_day), team, model_name, int(tokens_in), int(tokens_out),
                            price.cost(int(tokens_in), int(tokens_out))))
    return result


def price_for(model: str, prices: Mapping[str, Price]) -> Price:
    """The model's price: its own, else that of the longest priced name it extends.

    Providers report dated names (``gpt-4o-mini-2024-07-18``) for the model
    that was asked for (``gpt-4o-mini``); a price set for the short name covers
    them. A model without a price costs nothing.
    """
    if model in prices:
        return prices[model]
    extended = [name for name in prices if model.startswith((name + "-", name + ":"))]
    return prices[max(extended, key=len)] if extended else Price()


@dataclass(frozen=True)
class LatencyPoint:
    day: date
    latency_p50: int | None
    latency_p95: int | None
    ttft_p50: int | None
    ttft_p95: int | None


def latency_by_day(session: Session, f: Filters) -> list[LatencyPoint]:
    """Whole-answer latency and time to first token, p50 and p95 per day."""
    conditions = answer_conditions(f)
    day = day_of(session, Message.created_at)
    latency = {_as_date(d): (a, b) for d, a, b in _nearest_rank(session, Message.latency_ms, conditions, (0.5, 0.95), day)}
    ttft = {_as_date(d): (a, b) for d, a, b in _nearest_rank(session, Message.ttft_ms, conditions, (0.5, 0.95), day)}
    return [LatencyPoint(d, *latency.get(d, (None, None)), *ttft.get(d, (None, None)))
            for d in sorted(latency.keys() | ttft.keys())]


@dataclass(frozen=True)
class RatedAnswer:
    """A thumbs down with what was asked and answered, and where its triage stands."""

    rating_id: int
    message_id: int
    conversation_id: str
    question: str
    answer: str
    sources: list[dict]
    answerer: str | None
    model: str | None
    prompt_version: str | None
    status: str
    thumb: int
    reasons: list[str]
    comment: str | None
    rated_at: datetime
    triage_status: str
    triage_owner: str
    triage_note: str


def thumbs_down(
    session: Session, f: Filters, *, triage_status: str | None = None, limit: int = 50, offset: int = 0
) -> list[RatedAnswer]:
    """The thumbs down of the period, newest first, optionally only those in one triage status.

    The worst answers are these: an answer has one rating (its asker's), so
    "lowest rated" is every thumbs down, those with a reason or comment first.
    """
    question = aliased(Message)
    status = func.coalesce(Triage.status, literal("new", String))
    explained = case((or_(Rating.comment.is_not(None), cast(Rating.reasons, Text) != "[]"), 1), else_=0)
    query = (
        select(Rating.id, Message.id, Message.conversation_id, func.coalesce(question.content, ""), Message.content,
               Message.sources, Message.answerer, Message.model, Message.prompt_version, Message.status,
               Rating.thumb, Rating.reasons, Rating.comment, Rating.updated_at, status,
               func.coalesce(Triage.owner, ""), func.coalesce(Triage.note, ""))
        .select_from(Rating)
        .join(Message, Message.id == Rating.message_id)
        .outerjoin(question, question.id == Message.reply_to)
        .outerjoin(Triage, and_(Triage.subject == "rating", Triage.subject_id == Rating.id))
        .where(*rating_conditions(f), Rating.thumb == 0)
    )
    if triage_status:
        query = query.where(status == triage_status)
    query = query.order_by(explained.desc(), Rating.updated_at.desc(), Rating.id.desc()).limit(limit).offset(offset)
    return [RatedAnswer(*row) for row in session.execute(query).all()]


def triage_counts(session: Session, f: Filters) -> dict[str, int]:
    """Thumbs down of the period per triage status."""
    status = func.coalesce(Triage.status, literal("new", String))
    rows = session.execute(
        select(status, func.count())
        .select_from(Rating).join(Message, Message.id == Rating.message_id)
        .outerjoin(Triage, and_(Triage.subject == "rating", Triage.subject_id == Rating.id))
        .where(*rating_conditions(f), Rating.thumb == 0).group_by(status)
    ).all()
    return {s: int(n) for s, n in rows}


@dataclass(frozen=True)
class GapQuestion:
    message_id: int
    conversation_id: str
    question: str
    abstained: bool
    at: datetime
    user_id: int | None = None
    #: Answered in the middle band (the closest passages, which may not answer).
    unsure: bool = False


def gap_questions(session: Session, f: Filters, *, limit: int = 1000) -> list[GapQuestion]:
    """Questions the assistant abstained on, was unsure about, or whose answer was rated down, newest first."""
    question = aliased(Message)
    down = select(Rating.message_id).where(Rating.thumb == 0)
    rows = session.execute(
        select(Message.id, Message.conversation_id, question.content, Message.status == "abstained",
               Message.created_at, Message.user_id, Message.band == "unsure")
        .select_from(Message).join(question, question.id == Message.reply_to)
        .where(*answer_conditions(f),
               or_(Message.status == "abstained", Message.band == "unsure", Message.id.in_(down)))
        .order_by(Message.created_at.desc()).limit(limit)
    ).all()
    return [GapQuestion(mid, cid, text, bool(abstained), at, uid, bool(unsure))
            for mid, cid, text, abstained, at, uid, unsure in rows]


@dataclass(frozen=True)
class Choices:
    """The values the filters can take, from what is stored."""

    teams: list[str] = field(default_factory=list)
    answerers: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    prompt_versions: list[str] = field(default_factory=list)
    features: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)


def choices(session: Session, kind: str = "assistant", *, start: date | None = None, end: date | None = None) -> Choices:
    """Distinct teams, answerers, models, prompt versions, features and channels of the answers (in the period,
    if given: an index range instead of a scan of every answer), and the groups people are in."""
    found: dict[str, set[str]] = defaultdict(set)
    conditions = [Message.kind == kind, Message.role == "assistant"]
    if start is not None:
        conditions.append(Message.created_at >= datetime.combine(start, time.min, tzinfo=UTC))
    if end is not None:
        conditions.append(Message.created_at < datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC))
    columns = (Message.answerer, Message.model, Message.prompt_version, cast(Message.features, Text), Message.team,
               Message.channel)
    for answerer, model, prompt_version, features, team, channel in session.execute(
        select(*columns).where(*conditions).group_by(*columns)
    ).all():
        found["answerers"].add(answerer)
        found["models"].add(model)
        found["prompt_versions"].add(prompt_version)
        found["features"].update(json.loads(features or "[]"))
        found["teams"].add(team)
        found["channels"].add(channel)
    for team, groups in session.execute(select(User.team, cast(User.groups, Text)).distinct()).all():
        found["teams"].add(team)
        found["groups"].update(json.loads(groups or "[]"))
    return Choices(**{key: sorted(v for v in values if v) for key, values in found.items()})


__all__ = [
    "FINAL",
    "ChannelUsage",
    "Choices",
    "Comment",
    "DailyUsage",
    "Filters",
    "GapQuestion",
    "LatencyPoint",
    "Overview",
    "Price",
    "RatedAnswer",
    "Share",
    "Spend",
    "TrendPoint",
    "answer_conditions",
    "channel_split",
    "choices",
    "comments",
    "daily_usage",
    "day_of",
    "gap_questions",
    "latency_by_day",
    "overview",
    "price_for",
    "rating_conditions",
    "rating_share",
    "rating_trend",
    "reason_counts",
    "series_shares",
    "spend",
    "thumbs_down",
    "triage_counts",
    "week_of",
    "weekly_active_users",
    "wilson",
]
