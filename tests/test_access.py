"""From ID-token claims to an identity with roles; login configuration checks; pages per role."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from onboard.settings import Settings
from service.access import (
    LOCAL_IDENTITY,
    AccessDenied,
    AccessSettings,
    check_auth_config,
    email_is_verified,
    identity_from_claims,
    pages_for,
    token_expired,
)

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


def without_verified(**extra):
    raw = claims(**extra)
    del raw["email_verified"]
    return raw


@pytest.mark.parametrize("flag", [False, "false", "FALSE", 0, 1, "no", "yes", "1", "", None, [True]])
def test_an_email_is_verified_only_when_the_provider_says_true(flag):
    settings = AccessSettings(admin_emails=["alice@corp.com"], pilot_emails=["alice@corp.com"])
    who = identity_from_claims(claims(email_verified=flag), settings)
    assert who.roles == {"employee"}
    assert who.email == ""


@pytest.mark.parametrize("flag", [True, "true", " True "])
def test_email_verified_true_as_json_or_string_is_trusted(flag):
    settings = AccessSettings(admin_emails=["alice@corp.com"])
    who = identity_from_claims(claims(email_verified=flag), settings)
    assert who.is_admin and who.email == "alice@corp.com"


def test_an_email_without_the_verified_claim_grants_no_role():
    """Entra ID sends no email_verified: its e-mail is whatever the profile says, so it must not make an admin."""
    settings = AccessSettings(admin_emails=["alice@corp.com"], pilot_emails=["alice@corp.com"])
    for raw in (without_verified(), without_verified(provider="default"), without_verified(provider="entra")):
        who = identity_from_claims(raw, settings)
        assert who.roles == {"employee"} and who.email == ""


def test_a_provider_declared_trusted_has_its_emails_believed_without_the_claim():
    settings = AccessSettings(admin_emails=["alice@corp.com"], trusted_email_providers=[" Entra "])
    assert identity_from_claims(without_verified(provider="entra"), settings).is_admin
    assert identity_from_claims(without_verified(provider="Entra"), settings).is_admin
    assert not identity_from_claims(without_verified(provider="google"), settings).is_admin
    assert not identity_from_claims(without_verified(), settings).is_admin  # which provider: unknown
    assert not email_is_verified(without_verified(provider=["entra"]), settings)


def test_a_trusted_provider_that_says_not_verified_is_believed():
    settings = AccessSettings(admin_emails=["alice@corp.com"], trusted_email_providers=["entra"])
    for flag in (False, "false", 0):
        assert not identity_from_claims(claims(email_verified=flag, provider="entra"), settings).is_admin


def test_allowed_domains_need_a_verified_or_trusted_email():
    settings = AccessSettings(allowed_domains=["corp.com"])
    with pytest.raises(AccessDenied, match="verified e-mail"):
        identity_from_claims(without_verified(provider="entra"), settings)
    trusted = AccessSettings(allowed_domains=["corp.com"], trusted_email_providers=["entra"])
    assert identity_from_claims(without_verified(provider="entra"), trusted).email == "alice@corp.com"


def test_groups_claims_do_not_depend_on_the_email_being_verified():
    who = identity_from_claims(without_verified(groups=["admin"]), AccessSettings())
    assert who.is_admin and who.email == ""


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


def test_a_group_named_like_a_role_gives_no_audience_of_that_role():
    """ADMIN_GROUPS names another group: an identity-provider group called "admin" is not the admin role."""
    settings = AccessSettings(admin_groups=["it-admins"], pilot_groups=["beta"])
    who = identity_from_claims(claims(groups=["admin", "pilot", "sales"]), settings)
    assert who.roles == {"employee"}
    assert who.audiences == {"all", "sales", "employee"}
    assert who.memberships == {"sales", "employee"}
    admin = identity_from_claims(claims(groups=["it-admins"]), settings)
    assert admin.audiences == {"all", "it-admins", "employee", "pilot", "admin"}


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
        "redirect_uri": "https://onboarding.example.com/oauth2callback",
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


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("a" * 32, "repeats the same 1-character block"),
        ("abcdefghijklmnop" * 2, "repeats the same 16-character block"),
        ("Xq7!Xq7!Xq7!Xq7!Xq7!Xq7!Xq7!Xq7!Xq", "repeats the same 4-character block"),
        ("abcdefghijklmnopqrstuvwxyz0123456789", "runs of neighbouring characters"),
        ("zyxwvutsrqponmlkjihgfedcba9876543210", "runs of neighbouring characters"),
        ("a" * 30 + "b7", "bits of entropy"),
        (("acca" "caac" "caac" "acca" "caac" "acca" "acca" "caac" "caac" "acca"), "bits of entropy"),
    ],
)
def test_a_low_entropy_cookie_secret_is_refused_in_production_with_the_rule(secret, why):
    problems = check_auth_config(good_secrets(cookie_secret=secret), production=True)
    assert len(problems) == 1 and why in problems[0], problems
    assert "cookie_secret" in problems[0] and "token_hex" in problems[0]
    assert secret[:8] not in problems[0]  # the page shows the problems: never the secret
    assert check_auth_config(good_secrets(cookie_secret=secret), production=False) == []


def test_random_cookie_secrets_pass():
    rng = random.Random(17)
    hex_digits, url_safe = "0123456789abcdef", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for alphabet, length in ((hex_digits, 32), (hex_digits, 64), (url_safe, 32), (url_safe, 43)):
        for _ in range(500):
            secret = "".join(rng.choice(alphabet) for _ in range(length))
            if any(word in secret.lower() for word in ("xxx", "secret", "change", "example", "placeholder")):
                continue
            assert check_auth_config(good_secrets(cookie_secret=secret), production=True) == [], secret


@pytest.mark.parametrize("uri", [
    "http://onboarding.example.com/oauth2callback",
    "http://localhost:8501/oauth2callback",
    "http://127.0.0.1:8501/oauth2callback",
    "onboarding.example.com/oauth2callback",
    "https:///oauth2callback",
])
def test_production_requires_an_https_redirect_uri(uri):
    problems = check_auth_config(good_secrets(redirect_uri=uri), production=True)
    assert len(problems) == 1 and "redirect_uri must be an https:// address in production" in problems[0]
    assert check_auth_config(good_secrets(redirect_uri=uri), production=False) == []


def test_an_https_redirect_uri_with_a_port_passes_in_production():
    assert check_auth_config(good_secrets(redirect_uri="https://10.0.0.5:8443/oauth2callback"), production=True) == []


def test_trusted_email_providers_must_name_configured_providers():
    assert check_auth_config(good_secrets(), production=False, trusted_email_providers=["default"]) == []
    problems = check_auth_config(good_secrets(), production=False, trusted_email_providers=["entra"])
    assert problems == [("ONBOARD_ACCESS__TRUSTED_EMAIL_PROVIDERS names 'entra', which is not a provider of [auth] "
                        "(configured: default)")]
    provider = {"client_id": "a", "client_secret": "b", "server_metadata_url": "https://x"}
    named = {"auth": {"redirect_uri": "https://x/oauth2callback", "cookie_secret": GOOD_SECRET, "entra": provider}}
    assert check_auth_config(named, production=True, trusted_email_providers=["entra"]) == []
    assert check_auth_config(named, production=True, trusted_email_providers=["default"]) != []


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
            "redirect_uri": "https://onboarding.example.com/oauth2callback",
            "cookie_secret": GOOD_SECRET,
            "corp": {"client_id": "a", "client_secret": "b", "server_metadata_url": "http://x"},
            "google": {"client_id": "a", "client_secret": "b"},
        }
    }
    assert check_auth_config(secrets, production=True) == ["[auth.google] server_metadata_url is missing"]


def test_access_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ONBOARD_ACCESS__ADMIN_EMAILS", '["Boss@Corp.com"]')
    monkeypatch.setenv("ONBOARD_ACCESS__GROUPS_CLAIM", "roles")
    monkeypatch.setenv("ONBOARD_ACCESS__TRUSTED_EMAIL_PROVIDERS", '["Entra", " "]')
    settings = Settings().access
    assert settings.admin_emails == ["boss@corp.com"]
    assert settings.groups_claim == "roles"
    assert settings.trusted_email_providers == ["entra"]
