"""The one cleaning rule for stored and shown text (issue #17)."""

import pytest

from assistant.text import clean


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\x00b", "ab"),  # PostgreSQL refuses NUL in text
        ("ring\x07", "ring"),  # BEL
        ("\x1b[31mred\x1b[0m", "red"),  # ANSI colour, the whole sequence
        ("\x1b]0;title\x07after", "after"),  # OSC window title
        ("lone \ud800 surrogate", "lone  surrogate"),
        ("c1\x9bcontrol\x85", "c1control"),
        ("del\x7f", "del"),
        ("line\r\nbreak\rold mac", "line\nbreak\nold mac"),
        ("tab\tand\nnewline", "tab\tand\nnewline"),
        ("café 🙂 日本", "café 🙂 日本"),
        ("", ""),
    ],
)
def test_clean(raw, expected):
    assert clean(raw) == expected


def test_cleaned_text_encodes_as_utf8():
    assert clean("x\udcff\ud83d").encode("utf-8") == b"x"
