"""From ID-token claims to an identity with roles; login configuration checks; pages per role."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from onboard.access import (
    LOCAL_IDENTITY,
    AccessDenied,
    AccessSettings,
    check_auth_config,
    identity_from_claims,
    pages_for,
    token_expired,
)
from onboard.settings import Settings

GOOD_SECRET = "k3J9vQ2mZ7pL4wR8tY1uN6bX5cV0aS3dF"  # 33 random characters


def claims(**extra):
    return {"sub": "u-1", "email": "Alice@Corp.com", "email_verified": True, "name": "Alice", **extra}


def test_groups_from_a_list_claim():
    who = identity_from_claims(claims(groups=["staff", "pilot"]), AccessSettings())
    assert who.groups == {"staff", "pilot"}
    assert who.roles == {"employee", "pilot"}
    assert who.is_pilot and not who.is_admin


def test_groups_from_a_space_or_comma_separated_string_claim():
    who = identity_from_claims(claims(groups="staff, admin  sales"), AccessSettings())
    assert who.groups == {"staff", "admin", "sales"}
    assert who.is_admin


def test_groups_from_a_configured_claim_name():
    settings = AccessSettings(groups_claim="roles")
    who = identity_from_claims(claims(roles=["admin"], groups=["pilot"]), settings)
    assert who.groups == {"admin"}
    assert who.is_admin


def test_missing_groups_claim_makes_a_plain_employee():
    who = identity_from_claims(claims(), AccessSettings())
    assert who.subject == "u-1"
    assert who.email == "alice@corp.com"
    assert who.name == "Alice"
    assert who.groups == frozenset()
    assert who.roles == {"employee"}
    assert pages_for(who) == {"chat"}


def test_admin_implies_pilot_and_employee_and_opens_the_admin_page():
    who = identity_from_claims(claims(groups=["admin"]), AccessSettings())
    assert who.roles == {"employee", "pilot", "admin"}
    assert pages_for(who) == {"chat", "admin"}


def test_email_lists_grant_roles_case_insensitively():
    settings = AccessSettings(admin_emails=["ALICE@corp.com"], pilot_emails=["bob@corp.com"])
    alice = identity_from_claims(claims(), settings)
    bob = identity_from_claims(claims(sub="u-2", email="bob@corp.com", name=None), settings)
    assert alice.roles == {"employee", "pilot", "admin"}
    assert bob.roles == {"employee", "pilot"}
    assert bob.name == "bob@corp.com"


def test_unverified_email_grants_no_role():
    settings = AccessSettings(admin_emails=["alice@corp.com"], pilot_emails=["alice@corp.com"])
    for flag in (False, "false"):
        who = identity_from_claims(claims(email_verified=flag), settings)
        assert who.roles == {"employee"}
        assert who.email == ""


def test_email_without_verified_claim_is_trusted():
    settings = AccessSettings(admin_emails=["alice@corp.com"])
    raw = claims()
    del raw["email_verified"]
    assert identity_from_claims(raw, settings).is_admin


def test_name_falls_back_to_preferred_username():
    who = identity_from_claims(claims(name=None, preferred_username="alice.w"), AccessSettings())
    assert who.name == "alice.w"


def test_disallowed_domain_is_refused_with_a_readable_reason():
    settings = AccessSettings(allowed_domains=["corp.com"])
    assert identity_from_claims(claims(), settings).email == "alice@corp.com"
    with pytest.raises(AccessDenied) as caught:
        identity_from_claims(claims(email="eve@gmail.com"), settings)
    assert "gmail.com" in caught.value.reason
    assert "corp.com" in caught.value.reason
    assert caught.value.reason.endswith(".")


def test_subdomain_is_not_an_allowed_domain():
    with pytest.raises(AccessDenied):
        identity_from_claims(claims(email="eve@evil.corp.com"), AccessSettings(allowed_domains=["corp.com"]))


def test_unverified_email_does_not_satisfy_the_domain_rule():
    with pytest.raises(AccessDenied, match="verified e-mail"):
        identity_from_claims(claims(email_verified=False), AccessSettings(allowed_domains=["corp.com"]))


def test_missing_required_group_is_refused_with_a_readable_reason():
    settings = AccessSettings(allowed_groups=["staff"])
    assert identity_from_claims(claims(groups=["staff"]), settings).groups == {"staff"}
    with pytest.raises(AccessDenied) as caught:
        identity_from_claims(claims(groups=["contractors"]), settings)
    assert "group" in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_missing_subject_is_refused():
    with pytest.raises(AccessDenied, match="subject"):
        identity_from_claims(claims(sub=""), AccessSettings())


def test_audiences_are_all_plus_groups_plus_roles():
    who = identity_from_claims(claims(groups=["sales", "pilot"]), AccessSettings())
    assert who.audiences == {"all", "sales", "pilot", "employee"}


def test_local_identity_is_an_admin():
    assert LOCAL_IDENTITY.subject == "local"
    assert LOCAL_IDENTITY.is_admin and LOCAL_IDENTITY.is_pilot
    assert pages_for(LOCAL_IDENTITY) == {"chat", "admin"}


def test_token_expiry_respects_the_leeway():
    token = {"exp": 1_000}
    assert not token_expired(token, now=1_000)
    assert not token_expired(token, now=1_030)
    assert token_expired(token, now=1_031)
    assert token_expired(token, now=1_001, leeway_s=0)
    assert not token_expired({}, now=10**12)
    assert token_expired({"exp": "soon"}, now=0)


def test_token_expiry_accepts_a_datetime_and_defaults_to_now():
    assert token_expired({"exp": 1_000}, now=datetime(2024, 1, 1, tzinfo=UTC))
    assert token_expired({"exp": 1_000})
    assert not token_expired({"exp": 4_000_000_000})


def good_secrets(**auth):
    base = {
        "redirect_uri": "http://localhost:8501/oauth2callback",
        "cookie_secret": GOOD_SECRET,
        "client_id": "onboard",
        "client_secret": "s",
        "server_metadata_url": "http://127.0.0.1:9400/.well-known/openid-configuration",
    }
    return {"auth": {**base, **auth}}


def test_production_requires_an_auth_section_and_development_does_not():
    assert check_auth_config(None, production=True) != []
    assert check_auth_config({}, production=True) != []
    assert check_auth_config({"other": 1}, production=True) != []
    assert check_auth_config(None, production=False) == []
    assert check_auth_config({}, production=False) == []


def test_a_good_config_passes():
    assert check_auth_config(good_secrets(), production=True) == []


@pytest.mark.parametrize(
    "secret",
    [
        "short-but-random-Q8z",
        "please-change-me-before-going-live-now",
        "x" * 40,
        "my-EXAMPLE-cookie-value-1234567890ab",
    ],
)
def test_a_short_or_placeholder_cookie_secret_is_refused_in_production(secret):
    problems = check_auth_config(good_secrets(cookie_secret=secret), production=True)
    assert len(problems) == 1 and "cookie_secret" in problems[0]
    assert check_auth_config(good_secrets(cookie_secret=secret), production=False) == []


@pytest.mark.parametrize("key", ["client_id", "server_metadata_url", "cookie_secret"])
def test_missing_keys_are_problems_in_any_environment(key):
    secrets = good_secrets()
    del secrets["auth"][key]
    for production in (True, False):
        problems = check_auth_config(secrets, production=production)
        assert any(key in p for p in problems)


def test_named_providers_are_checked_each():
    secrets = {
        "auth": {
            "redirect_uri": "http://localhost:8501/oauth2callback",
            "cookie_secret": GOOD_SECRET,
            "corp": {"client_id": "a", "client_secret": "b", "server_metadata_url": "http://x"},
            "google": {"client_id": "a", "client_secret": "b"},
        }
    }
    assert check_auth_config(secrets, production=True) == ["[auth.google] server_metadata_url is missing"]


def test_access_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ONBOARD_ACCESS__ADMIN_EMAILS", '["Boss@Corp.com"]')
    monkeypatch.setenv("ONBOARD_ACCESS__GROUPS_CLAIM", "roles")
    settings = Settings().access
    assert settings.admin_emails == ["boss@corp.com"]
    assert settings.groups_claim == "roles"
