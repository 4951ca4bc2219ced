"""Feature rollout: pilot groups, a sticky percentage of everyone, and rules from the environment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from onboard.settings import Settings
from service.access import AccessSettings, identity_from_claims
from service.rollout import FeatureRule, RolloutSettings, bucket, features_for

SUBJECTS = [f"user-{i}" for i in range(10_000)]


def rollout(**rules) -> RolloutSettings:
    return RolloutSettings(features={name: FeatureRule(**rule) for name, rule in rules.items()})


def share(feature: str, settings: RolloutSettings) -> float:
    return sum(feature in features_for(s, settings) for s in SUBJECTS) / len(SUBJECTS) * 100


def test_group_members_always_get_the_feature():
    settings = rollout(**{"prompt-v2": {"groups": ["pilot"], "percent": 0}})
    assert all(features_for((s, ["pilot"]), settings) == ["prompt-v2"] for s in SUBJECTS[:500])
    assert all(features_for((s, ["staff"]), settings) == [] for s in SUBJECTS[:500])


def test_an_identity_counts_its_roles_as_groups():
    settings = rollout(**{"prompt-v2": {"groups": ["pilot"]}})
    access = AccessSettings(pilot_emails=["p@corp.com"])
    pilot = identity_from_claims({"sub": "p", "email": "p@corp.com", "email_verified": True}, access)
    employee = identity_from_claims({"sub": "e", "email": "e@corp.com"}, access)
    assert features_for(pilot, settings) == ["prompt-v2"]
    assert features_for(employee, settings) == []


def test_a_disabled_feature_is_off_for_everyone():
    settings = rollout(off={"groups": ["pilot"], "percent": 100, "enabled": False})
    assert all(features_for((s, ["pilot"]), settings) == [] for s in SUBJECTS[:500])


def test_everyone_and_no_one():
    settings = rollout(all={"percent": 100}, none={"percent": 0})
    assert share("all", settings) == 100
    assert share("none", settings) == 0


@pytest.mark.parametrize("percent", [10, 50])
def test_percent_split_matches_the_configured_share(percent):
    assert abs(share("f", rollout(f={"percent": percent})) - percent) <= 1.5


def test_features_are_sorted():
    settings = rollout(zeta={"percent": 100}, alpha={"percent": 100}, mid={"percent": 100})
    assert features_for("u", settings) == ["alpha", "mid", "zeta"]


def test_assignment_is_sticky_across_calls_and_settings_objects():
    first = [features_for(s, rollout(a={"percent": 30}, b={"percent": 60})) for s in SUBJECTS[:2000]]
    again = [features_for(s, rollout(a={"percent": 30}, b={"percent": 60})) for s in SUBJECTS[:2000]]
    assert first == again
    assert bucket("a", "user-1") == bucket("a", "user-1")


def test_raising_the_percentage_only_adds_people():
    low = {s for s in SUBJECTS if features_for(s, rollout(f={"percent": 10}))}
    high = {s for s in SUBJECTS if features_for(s, rollout(f={"percent": 30}))}
    assert low < high


def test_two_features_split_people_independently():
    settings = rollout(a={"percent": 50}, b={"percent": 50})
    both = sum(features_for(s, settings) == ["a", "b"] for s in SUBJECTS) / len(SUBJECTS) * 100
    assert abs(both - 25) <= 1.5


def test_a_salt_reshuffles_the_buckets():
    settings = rollout(f={"percent": 50})
    plain = [features_for(s, settings) for s in SUBJECTS[:1000]]
    salted = [features_for(s, settings, salt="2024-q3") for s in SUBJECTS[:1000]]
    assert plain != salted
    assert 0 <= bucket("f", "u", salt="x") < 1


def test_percent_outside_0_to_100_is_refused():
    with pytest.raises(ValidationError):
        FeatureRule(percent=101)
    with pytest.raises(ValidationError):
        FeatureRule(percent=-1)


def test_rules_come_from_the_environment(monkeypatch):
    monkeypatch.setenv(
        "ONBOARD_ROLLOUT__FEATURES",
        '{"prompt-v2": {"groups": ["pilot"], "percent": 10, "description": "New prompt"},'
        ' "old": {"percent": 100, "enabled": false}}',
    )
    settings = Settings().rollout
    assert settings.features["prompt-v2"] == FeatureRule(groups=["pilot"], percent=10, description="New prompt")
    assert features_for(("anyone", ["pilot"]), settings) == ["prompt-v2"]
    assert features_for(("anyone", []), settings) in ([], ["prompt-v2"])
    assert "old" not in features_for(("anyone", ["pilot"]), settings)
    assert Settings().rollout == settings


def test_no_rules_by_default():
    assert Settings().rollout.features == {}
    assert features_for("u", Settings().rollout) == []


def test_answer_overrides_merge_the_features_a_person_has():
    from service.rollout import RolloutSettings, answer_overrides

    settings = RolloutSettings(features={
        "a-prompt": {"groups": ["pilot"], "answer": {"prompt_version": "v2"}},
        "b-model": {"percent": 100, "answer": {"model": "big", "prompt_version": "v3"}},
        "c-off": {"enabled": False, "answer": {"mode": "llm"}},
    })
    assert answer_overrides([], settings) == {}
    assert answer_overrides(["a-prompt"], settings) == {"prompt_version": "v2"}
    assert answer_overrides(["b-model", "a-prompt"], settings) == {"prompt_version": "v3", "model": "big"}
    assert answer_overrides(["unknown"], settings) == {}


def test_an_identity_provider_group_named_like_a_role_does_not_turn_on_that_roles_features():
    from service.access import Identity

    rollout = RolloutSettings(features={"prompt-v3": {"groups": ["pilot"]}})
    pretender = Identity(subject="s1", email="a@example.com", name="A", groups=frozenset({"pilot"}),
                         roles=frozenset({"employee"}))
    pilot = Identity(subject="s2", email="b@example.com", name="B", groups=frozenset({"beta-testers"}),
                     roles=frozenset({"employee", "pilot"}))
    assert features_for(pretender, rollout) == []
    assert features_for(pilot, rollout) == ["prompt-v3"]
