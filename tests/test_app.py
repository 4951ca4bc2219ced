"""Smoke test of the web app with Streamlit's AppTest: the sample handbook answers a first question."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")


def test_first_question_gets_cited_passages_from_the_sample_handbook():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    at.text_input[0].set_value("how many vacation days do I get?").run()
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert labels and labels[0].startswith("[1]")
    assert any("time-off" in label for label in labels), labels

