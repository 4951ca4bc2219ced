"""Application wiring: settings, factories and the ``onboard`` command line.

``assistant`` (retrieval and answering) and ``feedback`` (conversations and
ratings) are the domain packages; this package builds them from one validated
:class:`~onboard.settings.Settings` object and exposes them to the CLI and the
Streamlit pages.
"""
