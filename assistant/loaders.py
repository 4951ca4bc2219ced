"""Turn files of the supported kinds into clean Markdown text plus metadata.

Every loader returns a :class:`LoadedDocument` whose ``text`` is Markdown with
``#`` headings, so one chunker (:mod:`assistant.chunking`) serves all kinds.
Markup that means nothing to a reader is removed here: YAML front matter,
Jekyll/Liquid/Jinja tags, Hugo shortcodes, MDX imports and comments, HTML and
JSX fragments, link targets, heading ids and Kramdown attributes, table-of-
contents markers. Admonitions (``:::tip``, MkDocs ``!!! note``, GitHub's
``> [!NOTE]``) keep their title and text, without their markers; a file that cannot be read
raises :class:`~assistant.errors.UnreadableFile` with the reason. The parsers
(pypdf, python-docx, YAML) raise many unrelated exception types on hostile
input, so each loader turns any exception of its parser into that error. A page
whose front matter cannot be read is refused too, not indexed without it: its
``audience`` would be lost and the page shown to everyone. Whatever the kind,
the text, title and metadata a loader returns pass through
:func:`assistant.text.clean` (:func:`load_bytes`) before anything chunks them.
"""

from __future__ import annotations

import difflib
import html
import io
import logging
import re
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from assistant.chunking import code_fence
from assistant.errors import UnreadableFile
from assistant.text import clean

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",  # Docusaurus, Nextra, Astro: Markdown plus JSX components and ES imports
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
}


@dataclass
class LoadedDocument:
    """A document's readable text (Markdown) and what we know about it."""

    text: str
    title: str
    kind: str
    metadata: dict[str, str | list[str]] = field(default_factory=dict)


def kind_of(path: Path) -> str | None:
    """The loader kind for ``path``, or None when the type is not supported."""
    return SUPPORTED_SUFFIXES.get(path.suffix.lower())


#: Reading one HTML or PDF file stops after this long. PDF text extraction costs about 30 µs an operator, and a
#: few kilobytes of compressed content can hold millions; libxml2 is quadratic on deeply nested HTML followed by
#: stray end tags (1 MB: 22 s).
READ_SECONDS = 60.0


def load_bytes(data: bytes, *, name: str, max_bytes: int) -> LoadedDocument:
    """Load a document from its bytes; ``name`` gives its type and fallback title."""
    kind = kind_of(Path(name))
    if kind is None:
        raise UnreadableFile(f"unsupported file type {Path(name).suffix or '(none)'!r}")
    if len(data) > max_bytes:
        raise UnreadableFile(f"too large ({len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.1f} MB)")
    if not data.strip():
        raise UnreadableFile("empty file")
    if kind in ("pdf", "docx"):  # compressed formats: the limit applies to what they expand to as well
        doc = _LOADERS[kind](data, Path(name).stem, max_content_bytes=max_bytes)
    else:
        doc = _LOADERS[kind](data, Path(name).stem)
    doc = _cleaned(doc)
    if not doc.text.strip():
        raise UnreadableFile("no readable text after cleaning")
    return doc


def _cleaned(doc: LoadedDocument) -> LoadedDocument:
    """The document through :func:`assistant.text.clean`, the rule for all stored text: whatever its kind, no
    control character (newline and tab kept) or lone surrogate reaches the chunks, the index or a page."""
    metadata = {key: [clean(v) for v in value] if isinstance(value, list) else clean(value)
                for key, value in doc.metadata.items()}
    return LoadedDocument(text=clean(doc.text), title=clean(doc.title), kind=doc.kind, metadata=metadata)


# --- plain text and Markdown -------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary content (NUL bytes) in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"not valid UTF-8 text (bad byte at offset {exc.start})") from None


def _load_text(data: bytes, stem: str) -> LoadedDocument:
    text = _strip_invisible(_decode(data))
    return LoadedDocument(text=text, title=_first_heading(text) or stem, kind="text")


_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(?:(.*?)\r?\n)?(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)", re.DOTALL)


def _load_markdown(data: bytes, stem: str) -> LoadedDocument:
    text = _strip_invisible(_decode(data))
    meta: dict = {}
    if _FRONT_MATTER_OPENER.match(text):
        match = _FRONT_MATTER.match(text)
        if match is None:
            raise UnreadableFile(_REFUSED.format(
                "front matter has no closing '---' line (a page starting with a horizontal rule: put a blank line "
                "before it)"))
        text = text[match.end() :]
        meta = _front_matter(match.group(1) or "")
    text = clean_markdown(text)
    title = _scalar(meta.get("title")) or _first_heading(text) or stem
    metadata = {}
    url = _scalar(meta.get("url") or meta.get("permalink") or meta.get("source_url"))
    if url:
        metadata["url"] = url
    audience = _audience_key(meta)
    if audience is not None:
        metadata["audience"] = _audience(meta[audience])
    return LoadedDocument(text=text, title=title, kind="markdown", metadata=metadata)


def _audience_key(meta: dict) -> str | None:
    """The front-matter key that holds the page's audience, whatever its case; :class:`UnreadableFile` for a
    near miss (``audiences``, ``audiance``): read as no audience, the page would be shown to everyone."""
    keys = [key for key in meta if isinstance(key, str)]
    for key in keys:
        if key.strip().lower() == "audience":
            return key
    near = difflib.get_close_matches("audience", [key.strip().lower() for key in keys], n=1, cutoff=0.75)
    if near:
        raise UnreadableFile(_REFUSED.format(
            f"front matter has '{near[0]}' but no 'audience' key (a misspelling? write e.g. 'audience: [hr]')"))
    return None


#: Why a page with front matter that cannot be read is refused rather than indexed without it.
_REFUSED = "{}; not indexed, so that it is not shown to more people than intended"
_FRONT_MATTER_OPENER = re.compile(r"\A---[ \t]*\r?\n")


def _front_matter(block: str) -> dict:
    """The front matter's keys, or :class:`UnreadableFile` naming the YAML problem and where it is.

    A page whose front matter cannot be read is refused, not indexed with its text alone:
    its ``audience`` would be lost, and the page would be shown to everyone (a folder
    audience does not make up for it, as front matter wins over folders).
    """
    try:
        loaded = yaml.load(clean(block), Loader=_YAML_LOADER)  # YAML refuses control characters; they go anyway
    except yaml.YAMLError as exc:
        raise UnreadableFile(_REFUSED.format(f"front matter is not valid YAML: {_yaml_problem(exc)}")) from None
    except RecursionError:  # e.g. ``title: [[[[...`` thousands deep, with the pure-Python parser
        raise UnreadableFile(_REFUSED.format("front matter could not be read (nested too deeply)")) from None
    if loaded is None:  # empty front matter
        return {}
    if not isinstance(loaded, dict):
        raise UnreadableFile(_REFUSED.format(
            f"front matter is a YAML {type(loaded).__name__}, not 'key: value' lines"))
    return loaded


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where, as lines and columns of the file (the front matter starts on line 2)."""

    def at(mark) -> str:
        return f" (line {mark.line + 2}, column {mark.column + 1})" if mark is not None else ""

    problem = getattr(exc, "problem", None)
    if problem is None:  # a ReaderError (a character YAML refuses) or another kind: its own message
        return str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f" {context}{at(exc.context_mark)}" if context else ""  # e.g. "while parsing a flow sequence"
    return f"{problem}{at(exc.problem_mark)}{where}"


def _audience(value: object) -> list[str]:
    """The group names of an ``audience`` value (``hr``, ``hr, it``, ``[hr, it]``), or :class:`UnreadableFile`.

    A value that names no group (empty, a mapping, nested lists) is refused like unreadable front
    matter: indexing the page for everyone is not what its author asked for.
    """
    listed = str(value).split(",") if isinstance(value, (str, int, float)) else value
    # Scalars only: str() of a nested YAML alias expands it exponentially.
    names = [name for name in map(_scalar, listed) if name] if isinstance(listed, list) else []
    if not names:
        raise UnreadableFile(_REFUSED.format(
            f"front matter 'audience' names no group (got {_describe(value)}; write e.g. 'audience: [hr]')"))
    return names


def _describe(value: object) -> str:
    if value is None or value == [] or (isinstance(value, str) and not value.strip(" ,")):
        return "an empty value"
    if isinstance(value, list):
        return "a list of no names"
    return f"a YAML {type(value).__name__}"


def _scalar(value: object) -> str:
    return str(value).strip() if isinstance(value, (str, int, float)) else ""


#: libyaml's safe loader when PyYAML has it: four times faster than the pure-Python one (2 s for 1 MB).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# A body never spans its own opener again ("(?:(?!opener).)*?"): a file of unclosed openers ("{{ {{ {{ …")
# would otherwise be re-scanned to its end from each one, minutes for a megabyte. Links are bounded for the same reason.
_LIQUID_RAW = re.compile(r"\{%-?\s*raw\s*-?%\}((?:(?!\{%-?\s*raw\b).)*?)\{%-?\s*endraw\s*-?%\}", re.DOTALL)
_SCRIPT = re.compile(r"<(script|style)\b[^<>]*>(?:(?!<\1\b).)*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_LIQUID_COMMENT = re.compile(r"\{%-?\s*comment\s*-?%\}(?:(?!\{%-?\s*comment\b).)*?\{%-?\s*endcomment\s*-?%\}", re.DOTALL)
_JINJA_COMMENT = re.compile(r"\{#(?:(?!\{#).)*?#\}", re.DOTALL)
_LIQUID_TAG = re.compile(r"\{%-?\s*+(\w++)((?:(?!\{%).)*?)-?%\}", re.DOTALL)
_LIQUID_OUTPUT = re.compile(r"\{\{(?:(?!\{\{).)*?\}\}", re.DOTALL)
_QUOTED = re.compile(r"""["']([^"']+)["']""")
_IMAGE = re.compile(r"!\[([^\]]{0,300})\]\([^)]{0,2000}\)")
_LINK = re.compile(r"\[([^\]]{1,300})\]\((?:[^()]|\([^)]{0,1000}\)){0,2000}\)")
_REF_LINK = re.compile(r"\[([^\]]{1,300})\]\[[^\]]{0,1000}\]")
_REF_DEF = re.compile(r"^[ \t]*\[[^\]\n]+\]:[ \t]*\S+.*$", re.MULTILINE)
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^<>\s]{1,2000})>")
_BARE_URL = re.compile(r"\bhttps?://[^\s<>()\[\]]+")
_HTML_COMMENT = re.compile(r"<!--(?:(?!<!--).)*?-->", re.DOTALL)
_MDX_COMMENT = re.compile(r"\{/\*(?:(?!\{/\*).)*?\*/\}", re.DOTALL)
_MDX_ESM = re.compile(
    r"^(?:import[ \t][^\n]*?from[ \t]*+['\"][^'\"\n]++['\"]|import[ \t]++['\"][^'\"\n]++['\"]"
    r"|export[ \t]++(?:const|let|var|default|function)\b[^\n]*+)[ \t]*+;?[ \t]*+$\n?",
    re.MULTILINE,
)
#: ``{{< name "arg" >}}``, ``{{% name %}}``, ``{{< /name >}}``; group 2 holds the arguments, as for Liquid tags.
_HUGO_SHORTCODE = re.compile(r"\{\{[<%]-?[ \t]*+/?[ \t]*+([\w./-]++)((?:(?!\{\{).)*?)-?[ \t]*[>%]\}\}", re.DOTALL)
#: Kramdown's ``* TOC`` list item (any text) followed by ``{:toc}``.
_KRAMDOWN_TOC = re.compile(r"^[ \t]*[*+-][ \t].*\n[ \t]*\{:[ \t]*toc[ \t]*\}[ \t]*$", re.MULTILINE)
_TOC_MARKER = re.compile(r"^[ \t]*(?:\[\[_?toc_?\]\]|\[TOC\]|\{:[ \t]*toc[ \t]*\}|<!--[ \t]*toc[ \t]*-->)[ \t]*$", re.MULTILINE | re.IGNORECASE)
#: Heading ids and classes at the end of a line: ``## Side navigation {#side-nav}``, ``{.note}``.
_ATTRIBUTES = re.compile(r"(?<![ \t])[ \t]*\{[ \t]*[#.][\w-][^{}\n]*\}[ \t]*$", re.MULTILINE)
#: Kramdown inline attribute lists: ``[link](url){:target="_blank"}``, ``{: .note}`` on its own line.
_IAL = re.compile(r"\{:[^{}\n]*\}")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_BLANKS = re.compile(r"\n{3,}")
_SPACES_ONLY = re.compile(r"^[ \t]+$", re.MULTILINE)


def clean_markdown(text: str) -> str:
    """Remove template tags, HTML and link targets; keep code blocks as written."""
    text = _admonitions(text)
    text = _LIQUID_COMMENT.sub("", text)
    text = _JINJA_COMMENT.sub("", text)
    parts = [_clean_code(block) if code else _clean_prose(block) for code, block in _code_blocks(text)]
    return _BLANKS.sub("\n\n", "".join(parts)).strip()


def _code_blocks(text: str) -> Iterator[tuple[bool, str]]:
    """``(is code, text)`` runs of ``text``, fences included in the code.

    As in CommonMark (and :func:`assistant.chunking.sections`), a fence left
    unclosed runs to the end of the document. One pass over the lines: a regex
    from each opener to its closer re-scanned the rest of a file of unclosed
    fences from every one of them (160 KB: 46 s).
    """
    lines = [line + "\n" for line in text.split("\n")]  # not splitlines(): a form feed does not end a line here
    lines[-1] = lines[-1][:-1]
    fence: str | None = None
    start = 0  # first line of the current run
    for i, line in enumerate(lines):
        was_open = fence is not None
        fence, fence_line = code_fence(line.rstrip("\r\n"), fence)
        if fence_line and not was_open:  # an opener: the prose before it ends
            if i > start:
                yield False, "".join(lines[start:i])
            start = i
        elif fence_line and fence is None:  # a closer: the code block ends with it
            yield True, "".join(lines[start : i + 1])
            start = i + 1
    if start < len(lines):
        yield fence is not None, "".join(lines[start:])


def _clean_code(code: str) -> str:
    """Template tags are removed from code too, but what ``{% raw %}`` protects is kept as written."""
    pieces = _LIQUID_RAW.split(code)  # even: outside raw blocks, odd: their verbatim content
    return "".join(
        piece if i % 2 else _LIQUID_OUTPUT.sub("", _LIQUID_TAG.sub("", piece)) for i, piece in enumerate(pieces)
    )


def _clean_prose(text: str) -> str:
    text = _LIQUID_RAW.sub(lambda m: m.group(1), text)
    text = _SCRIPT.sub("", text)
    text = _MDX_COMMENT.sub("", text)
    text = _MDX_ESM.sub("", text)
    text = _HUGO_SHORTCODE.sub(_inline_tag, text)
    text = _KRAMDOWN_TOC.sub("", text)
    text = _TOC_MARKER.sub("", text)
    text = _ATTRIBUTES.sub("", text)
    text = _IAL.sub("", text)
    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(1), text)
    text = _REF_LINK.sub(lambda m: m.group(1), text)
    text = _REF_DEF.sub("", text)
    text = _LIQUID_TAG.sub(_inline_tag, text)
    text = _LIQUID_OUTPUT.sub("", text)
    text = _HTML_COMMENT.sub("", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _HTML_TAG.sub("", text)
    text = _AUTOLINK.sub(lambda m: _url_host(m.group(1)), text)
    text = _BARE_URL.sub(_bare_url, text)
    text = _SPACES_ONLY.sub("", text)  # what removed tags leave behind
    return html.unescape(text)


_ADMONITION_FENCE = re.compile(r"^[ \t]*:{3,}[ \t]*(?P<kind>[A-Za-z][\w-]*)?[ \t]*(?P<title>.*)$")
_ADMONITION_MKDOCS = re.compile(r"^(?P<indent>[ \t]*)(?:!!!|\?\?\?\+?)[ \t]+(?P<kind>[\w-]+)(?:[ \t]+\"(?P<title>[^\"]*)\")?[ \t]*$")
_GITHUB_ALERT = re.compile(r"^[ \t]*>[ \t]*\[!(?:NOTE|TIP|IMPORTANT|WARNING|CAUTION)\][ \t]*$", re.IGNORECASE)


def _admonitions(text: str) -> str:
    """Admonition markers out, their title (bold) and text in; code blocks untouched.

    ``:::tip Holidays`` ... ``:::`` (Docusaurus, VuePress), ``!!! note "Carry over"``
    followed by an indented body (MkDocs: the body is de-indented, or it would
    read as a code block) and GitHub's ``> [!NOTE]`` line.
    """
    out: list[str] = []
    fence: str | None = None
    body_indent: str | None = None  # the indentation of an MkDocs admonition's body being de-indented
    for line in text.split("\n"):
        if body_indent is not None:
            if not line.strip() or line.startswith(body_indent):
                line = line[len(body_indent) :]
            else:
                body_indent = None
        fence, fence_line = code_fence(line, fence)
        if fence is not None or fence_line:
            out.append(line)
            continue
        if _GITHUB_ALERT.match(line):
            continue
        match = _ADMONITION_FENCE.match(line) or _ADMONITION_MKDOCS.match(line)
        if match is None:
            out.append(line)
            continue
        if match.re is _ADMONITION_MKDOCS:
            body_indent = match.group("indent") + "    "
        title = (match.group("title") or "").strip().strip("[]{}").strip()
        if title:
            out.extend(["", f"**{title}**", ""])
    return "\n".join(out)


def _inline_tag(match: re.Match) -> str:
    """A tag standing in a sentence keeps its first quoted argument (a name, a channel)."""
    # Only the characters next to the tag are looked at: a line of thousands of tags stays linear.
    text = match.string
    i = match.start() - 1
    while i >= 0 and text[i] in " \t":
        i -= 1
    j = match.end()
    while j < len(text) and text[j] in " \t":
        j += 1
    inline = (i >= 0 and text[i] != "\n") or (j < len(text) and text[j] != "\n")
    quoted = _QUOTED.search(match.group(2))
    if inline and quoted and not quoted.group(1).startswith(("/", ".")):
        return quoted.group(1)
    return ""


def _bare_url(match: re.Match) -> str:
    url = match.group(0)
    trail = len(url) - len(url.rstrip(".,;:!?'\""))
    return _url_host(url[: len(url) - trail]) + url[len(url) - trail :]


def _url_host(url: str) -> str:
    if url.startswith("mailto:"):
        return url[len("mailto:") :]
    return urlsplit(url).netloc


def _strip_invisible(text: str) -> str:
    return _INVISIBLE.sub("", text.replace("\r\n", "\n"))


_HEADING = re.compile(r"^#{1,6}[ \t]+(.+)$", re.MULTILINE)  # closing #s stripped after: linear on long lines


def _first_heading(text: str) -> str:
    match = _HEADING.search(text)
    return match.group(1).rstrip(" \t#").strip() if match else ""


# --- HTML -----------------------------------------------------------------------


def _load_html(data: bytes, stem: str) -> LoadedDocument:
    """Headings, lists and table rows as Markdown, read from lxml's parser events.

    lxml is linear on malformed markup (Python's html.parser took 10 s for 40 KB of
    unclosed tags). Reading its events, with no tree, keeps big pages linear too
    (editing a tree element by element took 12 s for 20,000 paragraphs) and has no
    depth limit (a tree keeps 2,048 levels and drops the text below them).
    """
    from bs4.dammit import EncodingDetector, UnicodeDammit
    from lxml import etree

    # libxml2 reads undeclared bytes as Latin-1, and knows fewer codecs than Python: decode here and hand lxml
    # UTF-8. A BOM, then the declared charset, then UTF-8, then Windows-1252 (not a statistical guess: it read
    # Windows-1252 quotes as cp775).
    _, bom = EncodingDetector.strip_byte_order_mark(data)
    declared = EncodingDetector.find_declared_encoding(data, is_html=True)
    decoded = UnicodeDammit(data, known_definite_encodings=[e for e in (bom, declared) if e],
                            user_encodings=["utf-8", "windows-1252"], is_html=True).unicode_markup
    if decoded is None:
        decoded = data.decode("utf-8", errors="replace")
    page = _HtmlText()
    parser = etree.HTMLParser(target=page, encoding="utf-8", huge_tree=True)
    markup = decoded.encode("utf-8")
    deadline = time.monotonic() + READ_SECONDS
    try:
        for start in range(0, len(markup), _HTML_FEED_BYTES):  # fed in pieces, to stop at the deadline
            if time.monotonic() > deadline:
                raise UnreadableFile(f"HTML took longer than {READ_SECONDS:g} s to read (at {start:,} of {len(markup):,} bytes)")
            parser.feed(markup[start : start + _HTML_FEED_BYTES])
        parser.close()
    except (etree.ParserError, etree.XMLSyntaxError, ValueError, LookupError) as exc:  # e.g. "Document is empty"
        raise UnreadableFile(f"broken HTML ({exc})") from None
    text = _strip_invisible("".join(page.out))
    text = "\n".join(line.strip() for line in text.splitlines())
    text = _BLANKS.sub("\n\n", text).strip()
    title = " ".join("".join(page.title).split())
    return LoadedDocument(text=text, title=title or _first_heading(text) or stem, kind="html")


_HTML_FEED_BYTES = 64 * 1024
_HTML_SKIPPED = frozenset({"script", "style", "noscript", "template", "nav", "footer", "svg", "iframe", "title"})
_HTML_BLOCKS = frozenset({"p", "div", "section", "article", "br", "pre", "blockquote", "table"})
_HTML_HEADINGS = {f"h{level}": level for level in range(1, 7)}
#: Inside a heading or a table cell, these stand apart from the words around them.
_HTML_SEPARATED = _HTML_BLOCKS | {"li", "ul", "ol", "dt", "dd", "tr", "td", "th", *_HTML_HEADINGS}


class _HtmlText:
    """An lxml parser target collecting a page's text; a heading or table row becomes one Markdown line."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.title: list[str] = []
        self._skipped = 0  # depth inside a skipped element (script, nav, title, ...)
        self._in_title = False
        self._line: list[list[str]] | None = None  # a heading (one part) or a row (one part per cell) being read
        self._line_depth = 0
        self._heading = 0  # the level of the heading being read; 0 for a row

    def start(self, tag: str, attrib) -> None:
        if self._skipped:
            self._skipped += 1
        elif tag in _HTML_SKIPPED:
            self._skipped = 1
            self._in_title = tag == "title" and not self.title
        elif self._line is not None:
            self._line_depth += 1
            if not self._heading and self._line_depth == 2 and tag in ("td", "th"):
                self._line.append([])
            elif tag in _HTML_SEPARATED:
                self._part().append(" ")
        elif tag in _HTML_HEADINGS or tag == "tr":
            self._line, self._line_depth = ([[]] if tag != "tr" else []), 1
            self._heading = _HTML_HEADINGS.get(tag, 0)
        else:
            self.out.append({"li": "\n- ", "table": "\n\n"}.get(tag, ""))

    def end(self, tag: str) -> None:
        if self._skipped:
            self._skipped -= 1
            self._in_title = self._in_title and self._skipped > 0
        elif self._line is not None:
            self._line_depth -= 1
            if self._line_depth == 0:
                self._end_line()
            elif tag in _HTML_SEPARATED:
                self._part().append(" ")
        elif tag in _HTML_BLOCKS:
            self.out.append("\n\n")

    def data(self, text: str) -> None:
        if self._skipped:
            if self._in_title:
                self.title.append(text)
        elif self._line is not None:
            if self._line or self._heading or not text.isspace():  # not the layout between <tr> and its first cell
                self._part().append(text)
        else:
            self.out.append(text)

    def close(self) -> None:
        if self._line is not None:  # cut off at the end of the file
            self._end_line()

    def _part(self) -> list[str]:
        if not self._line:  # text in a row before its first cell
            self._line.append([])
        return self._line[-1]

    def _end_line(self) -> None:
        parts = [" ".join("".join(part).split()) for part in self._line]
        if self._heading:
            self.out.append(f"\n\n{'#' * self._heading} {parts[0]}\n\n")
        else:
            self.out.append("| " + " | ".join(parts) + " |\n")
        self._line = None


# --- PDF ------------------------------------------------------------------------


#: The operators that can add text to a page (as pypdf checks before parsing a page): show text, draw an XObject.
_PDF_TEXT_OPERATOR = re.compile(rb"T[jJ]|Do|['\"]")


def _load_pdf(data: bytes, stem: str, *, max_content_bytes: int | None = None) -> LoadedDocument:
    """The text of each page under a ``## Page N`` heading.

    ``max_content_bytes`` bounds the page content once decompressed (the file-size
    limit applies to what the file expands to, too), and :data:`READ_SECONDS` the time.
    """
    from pypdf import PdfReader

    deadline = time.monotonic() + READ_SECONDS

    def check_time(*_: object) -> None:
        if time.monotonic() > deadline:
            raise UnreadableFile(f"PDF took longer than {READ_SECONDS:g} s to read (at page {number} of {len(reader.pages)})")

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableFile("encrypted PDF")
        pages: list[str] = []
        expanded = 0
        for number, page in enumerate(reader.pages, start=1):
            check_time()
            contents = page.get_contents()
            content = contents.get_data() if contents is not None else b""
            expanded += len(content)
            if max_content_bytes is not None and expanded > max_content_bytes:
                raise UnreadableFile(
                    f"PDF content too large once decompressed (over {max_content_bytes / 1e6:.1f} MB by page {number}; "
                    "the file-size limit applies to it)"
                )
            # A page with no text operator (a figure, a map) is not parsed: pypdf skips it too, unless it is
            # given a visitor, and the deadline's visitor would make it read every drawing operator.
            has_text = _PDF_TEXT_OPERATOR.search(content) is not None
            pages.append((page.extract_text(visitor_operand_before=check_time) or "") if has_text else "")
        title = (reader.metadata.title if reader.metadata else None) or ""
    except UnreadableFile:
        raise
    except Exception as exc:  # pypdf raises many types on broken files, not only PyPdfError
        log.debug("pypdf failed on %s", stem, exc_info=True)
        raise UnreadableFile(f"broken PDF ({type(exc).__name__}: {exc})") from None
    if not any(page.strip() for page in pages):
        raise UnreadableFile("PDF has no extractable text (scanned images?)")
    text = "\n\n".join(
        f"## Page {number}\n\n{_strip_invisible(page).strip()}"
        for number, page in enumerate(pages, start=1)
        if page.strip()
    )
    return LoadedDocument(text=text, title=str(title).strip() or stem, kind="pdf")


# --- DOCX -----------------------------------------------------------------------


def _load_docx(data: bytes, stem: str, *, max_content_bytes: int | None = None) -> LoadedDocument:
    import docx

    try:
        if max_content_bytes is not None:  # a zip bomb would be parsed into memory whole
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                xml = sum(i.file_size for i in archive.infolist() if i.filename.endswith((".xml", ".rels")))
            if xml > max_content_bytes:
                raise UnreadableFile(
                    f"DOCX too large once decompressed ({xml / 1e6:.1f} MB of XML; the file-size limit of "
                    f"{max_content_bytes / 1e6:.1f} MB applies to it)"
                )
        document = docx.Document(io.BytesIO(data))
    except UnreadableFile:
        raise
    except Exception as exc:  # noqa: BLE001  (python-docx raises many unrelated types on bad zips)
        raise UnreadableFile(f"broken DOCX ({type(exc).__name__})") from None
    try:
        return _docx_document(document, stem)
    except Exception as exc:  # a valid zip whose XML is not the shape python-docx expects
        log.debug("python-docx failed on %s", stem, exc_info=True)
        raise UnreadableFile(f"broken DOCX ({type(exc).__name__}: {exc})") from None


def _docx_document(document, stem: str) -> LoadedDocument:
    from docx.table import Table, _Cell

    # Style names looked up once: python-docx's ``paragraph.style`` searches every style for each paragraph
    # (24 s for 20,000 paragraphs). Cells are read as stored, a vertically merged one repeating the text above:
    # ``row.cells`` walks up the column for each merged cell and repeats a spanned one per grid column
    # (quadratic, and unbounded: gridSpan=100000 in a 2 KB file took 9.5 s).
    style_names = {style.style_id: style.name or "" for style in document.styles}
    lines: list[str] = []
    title = (document.core_properties.title or "").strip()
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            above: dict[int, str] = {}  # the text of each grid column in the row above, for vertical merges
            for row in block.rows:
                cells, column = [], 0
                for tc in row._tr.tc_lst:
                    text = above.get(column, "") if tc.vMerge == "continue" else _Cell(tc, block).text.strip()
                    above[column] = text
                    cells.append(text)
                    column += tc.grid_span
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
            continue
        text = block.text.strip()
        if not text:
            continue
        style = style_names.get(block._p.style, "")
        if style == "Title":
            title = title or text
            lines.append(f"# {text}\n")
        elif style.startswith("Heading") and style[-1:].isdigit():
            lines.append(f"\n{'#' * min(int(style[-1]), 6)} {text}\n")
        elif style.startswith("List"):
            lines.append(f"- {text}")
        else:
            lines.append(f"{text}\n")
    text = _BLANKS.sub("\n\n", _strip_invisible("\n".join(lines))).strip()
    return LoadedDocument(text=text, title=title or _first_heading(text) or stem, kind="docx")


_LOADERS: dict[str, Callable[..., LoadedDocument]] = {
    "markdown": _load_markdown,
    "text": _load_text,
    "html": _load_html,
    "pdf": _load_pdf,
    "docx": _load_docx,
}
