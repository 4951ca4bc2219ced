"""Text written by people, documents or a model, made safe to show on a page as Markdown.

No link, image, HTML or math from a document, a question or a model's answer
reaches the page: :func:`safe_markdown` keeps formatting (emphasis, lists,
tables) and escapes the rest; :func:`plain` shows text exactly as written;
:func:`safe_url` lets only plain web addresses through; :func:`visible`
drops the characters that would show text in another order than it is
stored. Pure functions (no Streamlit), so every page, the Help panel and the
dashboard use the same rules.
"""

from __future__ import annotations

import re

from assistant.text import clean, web_url

_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
#: An escape already made, or a character to escape: a backslash, bracket, angle bracket, dollar sign, or the
#: ``&`` of a character reference (``&#64;`` is ``@``: references are shown as written, so none spells out markup).
_ACTIVE = re.compile(r"(\\[!-/:-@\[-`{-~])|([\\\[\]<>$]|&(?=#[0-9]{1,7};|#[xX][0-9a-fA-F]{1,6};|[A-Za-z][A-Za-z0-9]{1,31};))")
#: Characters that reorder the text around them: bidirectional embeddings, overrides, isolates and marks
#: ("invoice\u202efdp.exe" shows as "invoiceexe.pdf"). Whatever users and documents write is shown without them.
_DIRECTION = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


#: Where GitHub-flavoured Markdown would make a link of plain text (Streamlit's renderer, remark-gfm, does it
#: after escapes are resolved, so escaping does not stop it): the ``//`` after a scheme's colon, the dot after
#: ``www`` and an ``@`` (e-mail, ``mailto:``, ``xmpp:``), each possibly written with a backslash escape. A WORD
#: JOINER (U+2060, invisible, no break) put there breaks every literal-autolink rule of mdast-util-gfm-autolink-
#: literal and micromark-extension-gfm-autolink-literal, which need those characters side by side.
_AUTOLINK = re.compile(r"(?<=:)(?=\\?/\\?/)|(?i:(?<=www))(?=\\?\.)|(?<!\\)(?=\\?@)")
_JOINER = "\u2060"


def visible(text: object) -> str:
    """``text`` as it may be shown: cleaned (:func:`assistant.text.clean`: no control characters, ANSI escapes or
    lone surrogates, whatever was stored before that rule), without the characters that would show it in
    another order than it is stored."""
    return _DIRECTION.sub("", clean(str(text)))


def _unlinked(text: str) -> str:
    """``text`` with a word joiner where Markdown would see a bare URL, ``www.`` address or e-mail address."""
    return _AUTOLINK.sub(_JOINER, text)


def visible_rows(rows):
    """A table's rows (dicts, or a DataFrame) with :func:`visible` text in every cell."""
    if hasattr(rows, "map"):
        return rows.map(lambda v: visible(v) if isinstance(v, str) else v)
    return [{k: visible(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]


def plain(text: str) -> str:
    """Markdown that shows ``text`` exactly as written (:func:`visible`): every punctuation mark escaped, line
    breaks kept, and no bare URL, ``www.`` or e-mail address made a link (:data:`_AUTOLINK`)."""
    return "  \n".join(_PUNCTUATION.sub(r"\\\1", line) for line in _unlinked(visible(text)).splitlines())


def safe_markdown(text: str) -> str:
    """Markdown written by a document or a model, with its links, images, HTML and math shown as text.

    Backslashes, brackets, angle brackets, dollar signs and the ``&`` of
    character references are escaped, so no ``[..](..)``, ``![..](..)``,
    reference link, footnote, autolink, tag or formula is ever parsed, and a
    word joiner keeps bare URLs, ``www.`` and e-mail addresses from becoming
    links; emphasis, lists, tables and code still render; control characters
    and characters that reorder text (:func:`visible`) are dropped.
    They are escaped inside code too (where the backslash then shows): telling
    code from text the way the browser's parser does (fences inside list
    items, unequal fences) is easy to get wrong, and a mistake there would
    let a link or an image through. An escape the text already has (``\\$10``,
    ``snake\\_case``) is kept: it shows its character, never markup, and
    escaping its backslash again would show the backslash.
    """
    return _ACTIVE.sub(lambda m: m.group(1) or "\\" + m.group(2), _unlinked(visible(text)))


def safe_url(url: str | None) -> str | None:
    """The URL if it is a plain web address (``http``/``https``), else ``None`` (``javascript:`` and the like)."""
    return web_url(url)
