"""The one rule for text that people, documents and models hand to the app: :func:`clean`.

Every backend must store the same thing and every page must show it: PostgreSQL
refuses a NUL in text, SQLite keeps it; a terminal or a log reader obeys an
ANSI escape; a lone surrogate cannot be encoded as UTF-8 at all. So questions,
comments, titles and document text pass through :func:`clean` before they are
stored, and text is cleaned again before it is shown (what was stored before
this rule existed is shown clean too).

Newlines and tabs stay; a Windows or old-Mac line break becomes ``\\n``; ANSI
escape sequences go whole (not just their ``ESC``, which would leave
``[31m`` behind); every other C0 and C1 control character, DEL and every lone
surrogate are removed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: An ANSI/VT100 control sequence (CSI ... final byte), or an OSC sequence ended by BEL or ST.
_ANSI = re.compile(r"\x1b\[[0-?]*+[ -/]*+[@-~]|\x1b\][^\x07\x1b]*+(?:\x07|\x1b\\)?")
#: Control characters but newline and tab, DEL, C1 controls, and surrogates (in a ``str`` they are always lone).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def clean(text: str) -> str:
    """``text`` without control characters (newline and tab kept) and lone surrogates; line breaks as ``\\n``."""
    if not text:
        return text
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ANSI.sub("", text))


#: The only link schemes a document's ``url`` may have to be shown or handed on (``javascript:`` and the like never).
WEB_SCHEMES = ("http", "https")


def web_url(url: object) -> str | None:
    """``url`` if it is a plain web address (``http``/``https`` with a host), else ``None``: the rule every channel
    (the pages, the API, batch output) applies to a document's link before handing it on."""
    if not url or not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.netloc:
        return None
    return url.strip()
