"""Which features a person sees: pilot groups first, then a growing share of everyone.

Each feature has a :class:`FeatureRule`. A feature is on for a person when it
is enabled and either they belong to one of the rule's groups (groups and
roles of their :class:`~service.access.Identity` both count) or their bucket
for that feature falls under the rule's percentage.

The bucket is a number in [0, 1) taken from a SHA-256 hash of the feature
name and the person's subject: the same person keeps the same answer on every
request and every server (sticky), raising the percentage only ever adds
people, and two features split people independently. A ``salt`` reshuffles
every bucket at once.

Rules are configuration, so a rollout changes without a deploy::

    ONBOARD_ROLLOUT__FEATURES='{"prompt-v2": {"groups": ["pilot"], "percent": 10}}'
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from service.access import Identity


class FeatureRule(BaseModel):
    """Who gets one feature."""

    #: Members of any of these groups (or holders of these roles) always get it.
    groups: list[str] = []
    #: Share of everyone else who gets it, 0-100.
    percent: float = Field(0, ge=0, le=100)
    #: Off switch: a disabled feature is off for everyone, groups included.
    enabled: bool = True
    description: str = ""
    #: What the feature changes in the answering settings for those who have it,
    #: e.g. ``{"prompt_version": "v2"}`` or ``{"mode": "llm", "model": "gpt-4.1-mini"}``.
    answer: dict[str, Any] = {}


class RolloutSettings(BaseModel):
    """All feature rules (``ONBOARD_ROLLOUT__FEATURES``, a JSON object)."""

    features: dict[str, FeatureRule] = {}


def bucket(feature: str, subject: str, salt: str = "") -> float:
    """A person's sticky position in [0, 1) for one feature."""
    key = f"{feature}:{subject}" if not salt else f"{salt}:{feature}:{subject}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest, "big") / 2**256


def feature_on(name: str, rule: FeatureRule, subject: str, groups: Iterable[str], salt: str = "") -> bool:
    """Whether one feature is on for a person."""
    if not rule.enabled:
        return False
    if set(rule.groups) & set(groups):
        return True
    return bucket(name, subject, salt) < rule.percent / 100


def features_for(
    who: Identity | tuple[str, Iterable[str]] | str,
    settings: RolloutSettings,
    salt: str = "",
) -> list[str]:
    """Sorted names of the features on for a person.

    ``who`` is an :class:`Identity` (its :attr:`~Identity.memberships` count as groups: its roles, and its
    groups but those named like a role), a
    ``(subject, groups)`` pair, or a bare subject with no groups.
    """
    if isinstance(who, Identity):
        subject, groups = who.subject, who.memberships
    elif isinstance(who, str):
        subject, groups = who, frozenset()
    else:
        subject, raw_groups = who
        groups = frozenset(raw_groups)
    return sorted(name for name, rule in settings.features.items() if feature_on(name, rule, subject, groups, salt))


def answer_overrides(features: Iterable[str], settings: RolloutSettings) -> dict[str, Any]:
    """The answering settings the given features change (in name order: a later feature wins a conflict)."""
    overrides: dict[str, Any] = {}
    for name in sorted(features):
        rule = settings.features.get(name)
        if rule is not None:
            overrides |= rule.answer
    return overrides
