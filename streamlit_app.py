"""Entry point of the web app: page setup, who is using it (login or local mode), and the navigation.

- Login mode (an ``[auth]`` section in the secrets): nobody signed in sees a
  landing page with a "Log in" button; a signed-in person is mapped to an
  :class:`~service.access.Identity` (someone who may not use the assistant
  sees why, and a "Log out" button, nothing else); an expired ID token logs
  out, for a clean new login.
- Local mode (no ``[auth]``): the local developer, with a banner saying so on
  every page. Production refuses to start without a valid ``[auth]``.
- Logging out ends the run at once (:func:`_log_out`): ``st.logout()`` only
  queues the redirect to the provider, and the page would otherwise run on
  for nobody (and raise ``NotSignedIn``).
- The log of this process never holds a configured secret or a token
  (:func:`onboard.logs.install`, set up again on every run so a changed
  ``.env`` is followed).

Every page gets the Help panel (:mod:`ui.help_panel`) in its sidebar.
Only the pages the person may open (:func:`service.access.pages_for`) are
registered with ``st.navigation``, so another page's URL is "page not found".
"""

import streamlit as st

from onboard import logs
from service.access import AccessDenied, check_auth_config, login_providers, pages_for, token_expired
from ui import help_panel, web

st.set_page_config(page_title="Onboarding assistant", page_icon=":material/school:", layout="wide")

PAGES = {
    "chat": {"page": "pages/chat.py", "title": "Ask the handbook", "icon": ":material/chat:", "default": True},
    "admin": {"page": "pages/admin.py", "title": "Dashboard", "icon": ":material/monitoring:"},
}


def _landing() -> None:
    st.title("Onboarding assistant")
    st.write("Ask anything about working here, and get answers from the handbook with their sources.")
    providers = login_providers(web.auth_secrets())
    if not providers:  # one provider, in [auth] itself
        if st.button("Log in", icon=":material/login:", type="primary", key="login"):
            st.login()
        return
    for name in providers:  # [auth.google], [auth.okta], ...: one button each
        label = " ".join(word[:1].upper() + word[1:] for word in name.replace("_", " ").replace("-", " ").split())
        if st.button(web.plain(f"Log in with {label}"), icon=":material/login:", type="primary", key=f"login-{name}"):
            st.login(name)


def _only(page) -> None:
    """Run one page function as the whole app (``st.navigation`` must be called, or ``pages/`` would show)."""
    st.navigation([st.Page(page, title="Onboarding assistant", default=True)], position="hidden").run()
    st.stop()


def _logging_out() -> None:
    st.caption("Logging out…")


def _log_out() -> None:
    """Log out and end this run: ``st.logout()`` only queues the redirect, the rest of the run would have nobody."""
    st.logout()
    _only(_logging_out)


settings = web.settings()
# Uncaught tracebacks go through logging (not printed by rich), where the secrets are redacted.
st.set_option("logger.enableRich", False)
logs.install(logs.secrets_of(settings, web.auth_secrets()))
production = settings.environment == "production"
login = web.login_configured()
problems = check_auth_config(web.auth_secrets(), production=production,
                             trusted_email_providers=settings.access.trusted_email_providers)
if problems:
    st.error("The app cannot start: login is not configured correctly.\n\n"
             + "\n".join(f"- {problem}" for problem in problems), icon=":material/error:")
    st.stop()

if login:
    claims = web.claims()
    if not claims:
        _only(_landing)
    if token_expired(claims):
        _log_out()
    try:
        identity = web.identity()
    except AccessDenied as denied:
        reason = denied.reason

        def _denied() -> None:
            st.title("You don't have access")
            st.error(reason, icon=":material/block:")
            if st.button("Log out", icon=":material/logout:", key="logout"):
                st.logout()  # the run ends with this page (_only)

        _only(_denied)
    with st.sidebar:
        st.caption(f"Signed in as {web.plain(identity.name)}")
        logging_out = st.button("Log out", icon=":material/logout:", key="logout")
    if logging_out:
        _log_out()
else:
    identity = web.identity()
    st.info(web.LOCAL_MODE_NOTICE, icon=":material/lock_open:")

allowed = pages_for(identity)
pages = [st.Page(**spec) for key, spec in PAGES.items() if key in allowed]
current = st.navigation(pages)
wanted = web.mark_entered()
if wanted in allowed and current.url_path != wanted and not PAGES[wanted].get("default"):
    st.switch_page(PAGES[wanted]["page"])
current.run()
help_panel.render(current.url_path or "chat")
