"""Tables and charts of the admin dashboard, from :mod:`feedback.analytics`, audit rows and API keys (no Streamlit here).

Each function returns a pandas ``DataFrame`` (the numbers behind a chart,
shown a click away) and, where a picture helps, an Altair chart built from
that same frame, so what the chart shows and what the table says never differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

import altair as alt
import pandas as pd

from feedback import keys as api_keys
from feedback.analytics import (
    ChannelUsage,
    DailyUsage,
    LatencyPoint,
    Share,
    Spend,
    TrendPoint,
    monday,
    series_shares,
)
from feedback.audit import (
    CREATE_API_KEY,
    EXPORT_ANSWERS,
    EXPORT_REVIEWED,
    OPEN_CONVERSATION,
    REVOKE_API_KEY,
    AuditEntry,
)
from feedback.gaps import Topic
from feedback.models import ApiKey

if TYPE_CHECKING:
    from assistant.manifest import IngestRun


def milliseconds(value: int | None) -> str:
    """``"850 ms"``, or ``"5.4 s"`` from a second on: short enough for a headline figure."""
    if value is None:
        return "–"
    return f"{value:,} ms" if value < 1000 else f"{value / 1000:.1f} s"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def share_text(share: Share) -> str:
    """``"82% (76–87%, n=230)"``: the share of thumbs up with its 95% interval."""
    if not share.n:
        return "no ratings"
    low, high = share.interval
    return f"{share.share:.0%} ({low:.0%}–{high:.0%}, n={share.n:,})"


def trend_frame(points: Iterable[TrendPoint]) -> pd.DataFrame:
    rows = []
    for p in points:
        low, high = p.share.interval or (None, None)
        rows.append({"period": pd.Timestamp(p.period), "series": p.series, "ratings": p.share.n,
                     "thumbs_up": p.share.up, "thumbs_down": p.share.down, "share_up": p.share.share,
                     "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["period", "series", "ratings", "thumbs_up", "thumbs_down", "share_up",
                                       "ci_low", "ci_high"])


def trend_chart(frame: pd.DataFrame) -> alt.Chart:
    """Share of thumbs up per period, one line per series, with its 95% interval as a band."""
    base = alt.Chart(frame).encode(
        x=alt.X("period:T", title=None),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
    )
    band = base.mark_area(opacity=0.15).encode(
        y=alt.Y("ci_low:Q", title="Thumbs up", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        y2="ci_high:Q",
    )
    line = base.mark_line(point=True).encode(
        y="share_up:Q",
        tooltip=[alt.Tooltip("period:T"), "series:N", alt.Tooltip("share_up:Q", format=".0%"),
                 alt.Tooltip("ci_low:Q", format=".0%", title="95% low"),
                 alt.Tooltip("ci_high:Q", format=".0%", title="95% high"), "ratings:Q"],
    )
    return (band + line).properties(height=260)


def reasons_frame(counts: Mapping[str, int], label=str) -> pd.DataFrame:
    return pd.DataFrame([{"reason": label(r), "thumbs_down": n} for r, n in counts.items()],
                        columns=["reason", "thumbs_down"]).sort_values("thumbs_down", ascending=False)


def bar_chart(frame: pd.DataFrame, category: str, value: str, title: str | None = None) -> alt.Chart:
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X(f"{value}:Q", title=title, axis=alt.Axis(format="d", tickMinStep=1)),  # counts: whole ticks
        y=alt.Y(f"{category}:N", sort="-x", title=None),
        tooltip=[category, value],
    ).properties(height=max(80, 26 * len(frame)))


def usage_frame(days: Sequence[DailyUsage], weekly_active: Mapping[date, int]) -> pd.DataFrame:
    frame = pd.DataFrame([vars(d) for d in days], columns=[
        "day", "questions", "conversations", "users", "answers", "abstained", "unsure", "input_tokens",
        "output_tokens"])
    frame = frame.rename(columns={"users": "daily active people"})
    frame["day"] = pd.to_datetime(frame["day"])
    frame["weekly active people"] = [weekly_active.get(monday(d.date())) for d in frame["day"]]
    return frame


def lines_chart(frame: pd.DataFrame, x: str, columns: Sequence[str], title: str, fmt: str = ",.0f") -> alt.Chart:
    """Several columns of one frame as lines sharing an axis."""
    long = frame.melt(id_vars=[x], value_vars=list(columns), var_name="series", value_name="value")
    return alt.Chart(long).mark_line(point=len(frame) < 60).encode(
        x=alt.X(f"{x}:T", title=None),
        y=alt.Y("value:Q", title=title, axis=alt.Axis(format=fmt)),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip(f"{x}:T"), "series:N", alt.Tooltip("value:Q", format=fmt)],
    ).properties(height=240)


def spend_frame(rows: Iterable[Spend]) -> pd.DataFrame:
    frame = pd.DataFrame([vars(r) for r in rows],
                         columns=["day", "team", "model", "input_tokens", "output_tokens", "cost"])
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def cost_chart(frame: pd.DataFrame) -> alt.Chart:
    """Cost per day, stacked by team."""
    daily = frame.groupby(["day", "team"], as_index=False)["cost"].sum()
    return alt.Chart(daily).mark_bar().encode(
        x=alt.X("day:T", title=None), y=alt.Y("cost:Q", title="Cost (USD)", axis=alt.Axis(format="$,.2f")),
        color=alt.Color("team:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("day:T"), "team:N", alt.Tooltip("cost:Q", format="$,.4f")],
    ).properties(height=240)


def team_frame(frame: pd.DataFrame, budgets: Mapping[str, float], days: int) -> pd.DataFrame:
    """Tokens and cost per team over the period, next to each team's monthly budget (pro rata for the period)."""
    teams = frame.groupby("team", as_index=False)[["input_tokens", "output_tokens", "cost"]].sum()
    for team in budgets:
        if team not in set(teams["team"]):
            teams.loc[len(teams)] = {"team": team, "input_tokens": 0, "output_tokens": 0, "cost": 0.0}
    monthly = teams["team"].map(lambda t: budgets.get(t))
    teams["budget_for_period"] = monthly * days / 30.4375
    teams["share_of_budget"] = teams["cost"] / teams["budget_for_period"]
    return teams.sort_values("cost", ascending=False).reset_index(drop=True)


def latency_frame(points: Iterable[LatencyPoint]) -> pd.DataFrame:
    frame = pd.DataFrame([vars(p) for p in points],
                         columns=["day", "latency_p50", "latency_p95", "ttft_p50", "ttft_p95"])
    frame = frame.rename(columns={"latency_p50": "answer p50", "latency_p95": "answer p95",
                                  "ttft_p50": "first token p50", "ttft_p95": "first token p95"})
    frame["day"] = pd.to_datetime(frame["day"])
    return frame


def topics_frame(topics: Iterable[Topic]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"topic": t.label, "questions": t.count, "people": t.people, "abstained": t.abstained, "unsure": t.unsure,
          "rated_down": t.rated_down, "example": t.examples[0].question if t.examples else ""} for t in topics],
        columns=["topic", "questions", "people", "abstained", "unsure", "rated_down", "example"],
    )


CHANNEL_COLUMNS = ["channel", "questions", "answers", "people"]


def channel_frame(split: Iterable[ChannelUsage]) -> pd.DataFrame:
    """Questions, answers and people per channel (:attr:`~feedback.analytics.Overview.by_channel`), in its order."""
    return pd.DataFrame([{"channel": c.channel, "questions": c.questions, "answers": c.answers, "people": c.users}
                         for c in split], columns=CHANNEL_COLUMNS)


def channel_chart(frame: pd.DataFrame) -> alt.Chart:
    """Questions per channel as bars, in the frame's order, with answers and people in the tooltip."""
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("questions:Q", title="Questions", axis=alt.Axis(format="d", tickMinStep=1)),
        y=alt.Y("channel:N", sort=list(frame["channel"]), title=None),
        tooltip=CHANNEL_COLUMNS,
    ).properties(height=alt.Step(26))  # a fixed height under ~100 px collapses the bands in Streamlit 1.67


def series_totals(points: Iterable[TrendPoint]) -> pd.DataFrame:
    """Per series over the whole period: ratings, share of thumbs up and its interval."""
    rows = []
    for series, share in series_shares(points).items():
        low, high = share.interval or (None, None)
        rows.append({"series": series, "ratings": share.n, "share_up": share.share, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["series", "ratings", "share_up", "ci_low", "ci_high"])


AUDIT_COLUMNS = ["when", "admin", "admin_email", "what", "owner", "owner_email", "conversation", "filters"]


def audit_frame(entries: Iterable[AuditEntry]) -> pd.DataFrame:
    """The audit trail as a table: who read what of whose, when (newest first, as given)."""
    return pd.DataFrame([{"when": pd.Timestamp(e.at), "admin": e.admin, "admin_email": e.admin_email,
                          "what": audit_action(e), "owner": e.owner, "owner_email": e.owner_email,
                          "conversation": e.conversation_id or "",
                          "filters": filters_text(e.filters) if e.action in (EXPORT_ANSWERS, EXPORT_REVIEWED) else ""}
                         for e in entries], columns=AUDIT_COLUMNS)


def audit_action(entry: AuditEntry) -> str:
    """``"opened the conversation"``, ``"exported 12 answers (CSV)"``, ``"exported 1 reviewed answer (JSONL)"``,
    ``"created API key onb_AbCd1234… (Slack bot, team People Ops)"``."""
    if entry.action == OPEN_CONVERSATION:
        return "opened the conversation"
    if entry.action in (CREATE_API_KEY, REVOKE_API_KEY):
        done = "created" if entry.action == CREATE_API_KEY else "revoked"
        key = entry.filters
        return f"{done} API key {shown_prefix(key.get('prefix', '?'))} ({key.get('name')}, team {key.get('team')})"
    what = {EXPORT_ANSWERS: ("answer", "CSV"), EXPORT_REVIEWED: ("reviewed answer", "JSONL")}.get(entry.action)
    if what is None:
        return entry.action
    noun, fmt = what
    count = entry.count or 0
    return f"exported {count:,} {noun}{'' if count == 1 else 's'} ({fmt})"


def filters_text(filters: Mapping[str, object]) -> str:
    """``"2026-11-01 to 2026-11-30, assistant, team: eng"``: the filters an export was made with."""
    parts = []
    if "start" in filters or "end" in filters:
        parts.append(f"{filters.get('start', '…')} to {filters.get('end', '…')}")
    parts += [str(v) if k == "kind" else f"{k.replace('_', ' ')}: {v}"
              for k, v in filters.items() if k not in ("start", "end")]
    return ", ".join(parts)


RUN_COLUMNS = ["started", "finished", "collection", "status", "added", "changed", "removed", "unchanged", "failed",
               "index_version", "failures"]
#: How the dashboard names a run's status (``kb_run.status``).
RUN_STATUS = {"running": "running", "completed": "complete", "interrupted": "interrupted", "failed": "failed"}


def runs_frame(runs: Iterable[IngestRun]) -> pd.DataFrame:
    """Indexing runs as a table: when, how it ended, what changed, and why files failed (``source: reason``)."""
    return pd.DataFrame([{"started": pd.Timestamp(r.started_at),
                          "finished": pd.Timestamp(r.finished_at) if r.finished_at else pd.NaT,
                          "collection": r.collection, "status": RUN_STATUS.get(r.status, r.status),
                          "added": r.added, "changed": r.changed, "removed": r.removed, "unchanged": r.unchanged,
                          "failed": r.failed, "index_version": r.index_version,
                          "failures": "; ".join(f"{f.get('source')}: {f.get('reason')}" for f in r.failures or [])}
                         for r in runs], columns=RUN_COLUMNS)


def shown_prefix(prefix: str) -> str:
    """``"onb_AbCd1234…"``: how a key is told apart in a list (never the key itself)."""
    return f"{api_keys.SECRET_PREFIX}{prefix}…"


KEY_COLUMNS = ["id", "key", "name", "team", "groups", "on_behalf", "rate_per_minute", "created", "created_by",
               "expires", "last_used", "state"]


def _when(value: datetime | None, otherwise: str) -> str:
    """``"2027-03-07 21:07 UTC"``, or ``otherwise`` (a key that never expires, a key never used)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else otherwise


def keys_frame(found: Iterable[ApiKey], default_rate: int, now: datetime | None = None) -> pd.DataFrame:
    """API keys as a table, newest first as given: what each is, whose, its limits and state (never its hash)."""
    return pd.DataFrame([{"id": k.id, "key": shown_prefix(k.prefix), "name": k.name, "team": k.team,
                          "groups": ", ".join(k.groups), "on_behalf": k.on_behalf,
                          "rate_per_minute": str(k.rate_per_minute) if k.rate_per_minute else f"default ({default_rate})",
                          "created": pd.Timestamp(k.created_at), "created_by": k.created_by or "",
                          "expires": _when(k.expires_at, "never"), "last_used": _when(k.last_used_at, "never"),
                          "state": api_keys.state(k, now)}
                         for k in found], columns=KEY_COLUMNS)
