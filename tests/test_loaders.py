"""Loaders: every supported kind becomes clean Markdown plus metadata; broken input is refused with a reason."""

from __future__ import annotations

import io

import pytest

from assistant import loaders
from assistant.errors import UnreadableFile
from assistant.loaders import kind_of, load_bytes

MB = 1_000_000


def load(data: bytes | str, name: str, max_bytes: int = MB):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return load_bytes(data, name=name, max_bytes=max_bytes)


# --- Markdown ---------------------------------------------------------------------

FRONT_MATTER_DOC = """\
---
title: Getting Paid
url: https://handbook.example.com/pay
audience: hr
layout: page
---
# Payroll

Payday is the 25th of each month.
"""


def test_front_matter_becomes_metadata_and_is_removed_from_text():
    doc = load(FRONT_MATTER_DOC, "pay.md")

    assert doc.kind == "markdown"
    assert doc.title == "Getting Paid"
    assert doc.metadata == {"url": "https://handbook.example.com/pay", "audience": ["hr"]}
    assert doc.text == "# Payroll\n\nPayday is the 25th of each month."
    for leftover in ("---", "layout", "title:", "audience"):
        assert leftover not in doc.text


def test_audience_in_front_matter_becomes_a_list():
    doc = load("---\naudience: [hr, managers]\n---\nReview cycles run twice a year.\n", "reviews.md")
    assert doc.metadata["audience"] == ["hr", "managers"]
    doc = load("---\naudience: hr, managers\n---\nReview cycles run twice a year.\n", "reviews.md")
    assert doc.metadata["audience"] == ["hr", "managers"]


def test_title_falls_back_to_first_heading_then_file_stem():
    assert load("Intro.\n\n## Second level\n\ntext\n", "a.md").title == "Second level"
    assert load("Just prose, no heading.\n", "just-prose.md").title == "just-prose"


def test_a_page_whose_front_matter_is_not_valid_yaml_is_refused_with_the_problem_and_where_it_is():
    # A typo in a restricted page's front matter once made it public: the YAML error was swallowed.
    with pytest.raises(UnreadableFile) as excinfo:
        load("---\ntitle: Salary bands\naudience: [hr\n---\n# Bands\n\nThe bands.\n", "bands.md")
    reason = str(excinfo.value)
    assert reason.startswith("front matter is not valid YAML: did not find expected ',' or ']'")
    assert "while parsing a flow sequence (line 3, column 11)" in reason  # the file's line, where "[hr" opens
    assert "not indexed" in reason


NO_GROUP = "front matter 'audience' names no group (got "


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("---\ntitle: Bands\naudience: hr\n\n# Bands\n\nThe bands.\n", "front matter has no closing '---' line"),
        ("---\n- audience: hr\n---\n# Bands\n\nThe bands.\n", "front matter is a YAML list, not 'key: value' lines"),
        ("---\naudience:\n---\n# Bands\n\nThe bands.\n", NO_GROUP + "an empty value"),
        ("---\naudience: []\n---\n# Bands\n\nThe bands.\n", NO_GROUP + "an empty value"),
        ("---\naudience: {hr: yes}\n---\n# Bands\n\nThe bands.\n", NO_GROUP + "a YAML dict"),
        ("---\naudience: [[hr]]\n---\n# Bands\n\nThe bands.\n", NO_GROUP + "a list of no names"),
    ],
    ids=["unclosed", "a-list", "empty-audience", "empty-list", "mapping", "nested-list"],
)
def test_a_page_whose_front_matter_or_audience_cannot_be_read_is_refused(text, reason):
    with pytest.raises(UnreadableFile) as excinfo:
        load(text, "bands.md")
    assert str(excinfo.value).startswith(reason), str(excinfo.value)


def test_empty_front_matter_and_control_characters_in_it_are_fine():
    assert load("---\n---\n# Bands\n\nThe bands.\n", "bands.md").metadata == {}
    doc = load("---\ntitle: \"Salary\x07 bands\"\naudience: hr\x1b[0m\n---\n# Bands\n\nThe bands.\n", "bands.md")
    assert (doc.title, doc.metadata) == ("Salary bands", {"audience": ["hr"]})


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ("# Bands\x07\n\nThe\x7f bands\x1b[31m are\x9b reviewed.\x0c\n", "bands.md"),
        ("# Bands\x07\n\nThe bands\x1b[31m are\x08 reviewed.\n", "bands.txt"),
        ("<title>Bands\x07</title><h1>Bands</h1><p>The bands\x1b[31m are\x01 reviewed.</p>", "bands.html"),
    ],
    ids=["markdown", "text", "html"],
)
def test_document_text_and_title_go_through_the_shared_cleaning_rule(data, name):
    doc = load(data, name)
    assert "The bands are reviewed." in doc.text
    assert doc.title == "Bands"
    assert not any(ord(c) < 32 and c not in "\n\t" or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
                   for c in doc.text + doc.title)


def test_liquid_tags_outputs_and_comments_are_removed():
    text = """\
{% include header.html %}
{% comment %}
Internal note: the bonus figure is secret.
{% endcomment %}
# Expenses {{ page.subtitle }}

Submit receipts monthly.{% if site.show %} Really.{% endif %}
{{ site.footer | markdownify }}
{# a jinja comment #}
"""
    doc = load(text, "expenses.md")

    assert "{%" not in doc.text and "%}" not in doc.text
    assert "{{" not in doc.text and "}}" not in doc.text
    assert "{#" not in doc.text
    assert "Internal note" not in doc.text and "secret" not in doc.text
    assert "include" not in doc.text and "header.html" not in doc.text
    assert doc.text.startswith("# Expenses")
    assert "Submit receipts monthly. Really." in doc.text


def test_inline_liquid_tag_in_a_sentence_keeps_its_quoted_argument():
    doc = load('Questions? Ask in {% slack_channel "people-ops" %} any time.\n', "help.md")
    assert doc.text == "Questions? Ask in people-ops any time."


def test_inline_liquid_tag_starting_a_sentence_keeps_its_quoted_argument():
    doc = load('{% slack_channel "people-ops" %} is where to ask about payroll.\n', "help.md")
    assert doc.text == "people-ops is where to ask about payroll."


def test_liquid_tag_on_its_own_line_leaves_nothing():
    doc = load('Before.\n\n{% image "_img/ocelot.png" "ocelot" %}\n\nAfter.\n', "img.md")
    assert "ocelot" not in doc.text
    assert doc.text == "Before.\n\nAfter."


def test_hugo_shortcodes_are_removed_and_inline_ones_keep_their_quoted_argument():
    text = (
        '{{< alert title="Note" color="info" >}}\nEveryone gets 25 days of paid time off.\n{{< /alert >}}\n\n'
        "{{% notice tip %}}\nBook leave in BambooHR.\n{{% /notice %}}\n\n"
        'Questions go to {{< member-by-gitlab "people-ops" >}} on Slack.\n'
    )
    doc = load(text, "time-off.md")
    assert doc.text == "Everyone gets 25 days of paid time off.\n\nBook leave in BambooHR.\n\nQuestions go to people-ops on Slack."


def test_mdx_imports_exports_comments_and_components_are_removed():
    text = """\
---
title: Time off
---
import Tabs from '@theme/Tabs';
import TabItem from "@theme/TabItem"
export const meta = {audience: 'all'};

<Tabs>
  <TabItem value="us" label="US">
  US staff accrue leave monthly.
  </TabItem>
</Tabs>

{/* reviewers: check the accrual rate */}
<Callout type="warning">Ask your manager first.</Callout>

```js
import Tabs from '@theme/Tabs';
```
"""
    doc = load(text, "time-off.mdx")
    assert doc.title == "Time off"
    assert doc.text == "US staff accrue leave monthly.\n\nAsk your manager first.\n\n```js\nimport Tabs from '@theme/Tabs';\n```"


def test_admonitions_keep_their_title_and_text_without_markers():
    text = """\
:::tip Holidays
Public holidays come on top of your PTO.
:::

:::warning
Unused days lapse in March.
:::

!!! note "Carry over"
    You can carry over up to 5 days.

    Ask People Ops for more.

Back to normal text.

> [!IMPORTANT]
> Book leave two weeks ahead.
"""
    doc = load(text, "leave.md")
    assert doc.text == (
        "**Holidays**\n\nPublic holidays come on top of your PTO.\n\nUnused days lapse in March.\n\n"
        "**Carry over**\n\nYou can carry over up to 5 days.\n\nAsk People Ops for more.\n\nBack to normal text.\n\n"
        "> Book leave two weeks ahead."
    )


def test_admonition_markers_inside_code_blocks_are_kept():
    text = "Write a tip like this:\n\n```md\n:::tip Title\nText\n:::\n!!! note\n    Body\n```\n"
    doc = load(text, "docs.md")
    assert ":::tip Title\nText\n:::\n!!! note\n    Body" in doc.text


def test_heading_ids_attribute_lists_and_toc_markers_are_removed():
    text = """\
# Engagements
{: .no_toc }

* TOC
{:toc}

[[toc]]

## Set up {#set-up-phase}

Read the [guide](https://example.com/guide){:target="_blank"} first.
{: .note }

## Discovery {.highlight}

Interview users.
"""
    doc = load(text, "engagements.md")
    assert doc.text == "# Engagements\n\n## Set up\n\nRead the guide first.\n\n## Discovery\n\nInterview users."


def test_html_fragments_are_removed_from_prose():
    text = (
        '<div class="alert">Badges are issued at reception.</div>\n'
        "First line<br>second line<br/>third line\n"
        "<!-- hidden editor note -->\n"
        "Fish &amp; chips on <b>Fridays</b>.\n"
    )
    doc = load(text, "office.md")

    assert "<" not in doc.text and ">" not in doc.text
    assert "hidden editor note" not in doc.text
    assert "Badges are issued at reception." in doc.text
    assert "First line\nsecond line\nthird line" in doc.text
    assert "Fish & chips on Fridays." in doc.text


def test_script_and_style_bodies_in_markdown_are_removed():
    text = "Welcome aboard.\n\n<script>alert(\"tracking\")</script>\n<style>.x { color: red }</style>\n\nEnjoy.\n"
    doc = load(text, "welcome.md")
    assert "alert" not in doc.text
    assert "color" not in doc.text


def test_fenced_code_blocks_are_kept_verbatim():
    code = (
        "```python\n"
        "# this comment is code, not a heading\n"
        'html = "<div>x</div><br>"\n'
        "url = \"[docs](https://example.com/a)\"  # see https://example.com/b\n"
        "```"
    )
    text = f"# Setup\n\nRun <b>this</b> with [the tool](https://tool.example.com):\n\n{code}\n\nDone.\n"
    doc = load(text, "setup.md")

    assert code in doc.text
    assert "Run this with the tool:" in doc.text


def test_a_code_block_ends_at_a_closing_fence_as_long_or_longer_and_an_unclosed_one_at_the_end():
    text = (
        "Tilde fences:\n\n~~~\n<b>kept</b> ```\n~~~~\n\n"  # a backtick line inside does not close it
        "After it, <b>tags</b> go.\n\n"
        "```\nnever closed <i>x</i>\n\n# Not a heading\n"
    )
    doc = load(text, "fences.md")
    assert "~~~\n<b>kept</b> ```\n~~~~" in doc.text
    assert "After it, tags go." in doc.text
    assert doc.text.endswith("```\nnever closed <i>x</i>\n\n# Not a heading")  # code to the end, as in CommonMark


def test_liquid_raw_block_inside_code_is_shown_literally():
    text = 'Link to a page like so:\n\n```\n{% raw %}{% page "updating/components" %}{% endraw %}\n```\n'
    doc = load(text, "shortcodes.md")
    assert '{% page "updating/components" %}' in doc.text


def test_links_become_their_text_and_bare_urls_their_host():
    text = (
        "Read [the travel policy](https://travel.example.com/policy?id=3) first.\n"
        "![floor plan](img/plan.png)\n"
        "The portal lives at https://portal.example.org/login?next=/home for now.\n"
        "Mail <mailto:help@example.com> or see <https://wiki.example.net/page>.\n"
    )
    doc = load(text, "links.md")

    assert "Read the travel policy first." in doc.text
    assert "floor plan" in doc.text and "plan.png" not in doc.text
    assert "The portal lives at portal.example.org for now." in doc.text
    assert "Mail help@example.com or see wiki.example.net." in doc.text
    assert "http" not in doc.text and "](" not in doc.text


def test_bare_url_at_the_end_of_a_sentence_keeps_the_full_stop():
    doc = load("Visit https://benefits.example.com/dental. Claims take a week.\n", "dental.md")
    assert doc.text == "Visit benefits.example.com. Claims take a week."


def test_unicode_direction_and_zero_width_characters_are_removed():
    invisible = "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
    text = f"# Wel{invisible}come\n\nZero\u200bwidth and \u202ereversed\u202c words.\n"
    doc = load(text, "invisible.md")

    assert not any(ch in doc.text for ch in invisible)
    assert doc.text == "# Welcome\n\nZerowidth and reversed words."
    assert doc.title == "Welcome"


def test_crlf_line_endings_and_utf8_bom_are_normalised():
    data = b"\xef\xbb\xbf---\r\ntitle: Windows doc\r\n---\r\n# Heading\r\n\r\nBody.\r\n"
    doc = load(data, "win.md")
    assert doc.title == "Windows doc"
    assert "\r" not in doc.text
    assert doc.text == "# Heading\n\nBody."


# --- plain text, HTML ---------------------------------------------------------------


def test_plain_text_is_kept_and_titled_from_stem():
    doc = load("Parking is free\nfor all staff.\n", "parking.txt")
    assert doc.kind == "text"
    assert doc.title == "parking"
    assert doc.text == "Parking is free\nfor all staff.\n"


def test_utf16_text_with_bom_is_decoded():
    doc = load("Caf\u00e9 opens at nine.".encode("utf-16"), "cafe.txt")
    assert doc.text == "Caf\u00e9 opens at nine."


HTML_DOC = b"""<!doctype html>
<html><head><title>Office Guide</title>
<style>.hidden { display: none }</style>
<script>var tracking = "secret-tracker";</script>
</head>
<body>
<nav>Home | About</nav>
<h1>Welcome</h1>
<p>Hello <b>team</b>.</p>
<h2>Desks</h2>
<table><tr><th>Floor</th><th>Team</th></tr><tr><td>1</td><td>Sales</td></tr></table>
<ul><li>Bring a badge</li><li>Water the plants</li></ul>
<footer>Copyright Northwind</footer>
</body></html>
"""


def test_html_title_headings_tables_and_lists():
    doc = load(HTML_DOC, "guide.html")

    assert doc.kind == "html"
    assert doc.title == "Office Guide"
    lines = doc.text.splitlines()
    assert "# Welcome" in lines
    assert "## Desks" in lines
    assert "Hello team." in lines
    assert "| Floor | Team |" in lines
    assert "| 1 | Sales |" in lines
    assert "- Bring a badge" in lines and "- Water the plants" in lines
    assert lines.index("# Welcome") < lines.index("## Desks") < lines.index("| 1 | Sales |")


def test_html_script_style_nav_footer_are_dropped():
    doc = load(HTML_DOC, "guide.html")
    for dropped in ("secret-tracker", "display", "Home | About", "Copyright", "Office Guide"):
        assert dropped not in doc.text
    assert "<" not in doc.text


def test_html_table_rows_are_contiguous():
    doc = load(HTML_DOC, "guide.html")
    assert "| Floor | Team |\n| 1 | Sales |" in doc.text


def test_html_without_title_uses_first_heading():
    doc = load(b"<html><body><h2>Lunch menu</h2><p>Soup.</p></body></html>", "menu.htm")
    assert doc.title == "Lunch menu"


def test_html_cells_and_headings_read_as_one_line_with_inline_markup_joined_as_written():
    page = (
        b"<h2>Work <em>with</em>, not for, <a href='/p'>partners</a></h2>"
        b"<table>\n <tr>\n  <td>Slack\nchannels</td><td>#a<br>#b</td><td><p>one</p><p>two</p><script>x()</script></td></tr>"
        b"</table>"
    )
    doc = load(page, "partners.html")
    assert "## Work with, not for, partners" in doc.text.splitlines()
    assert "| Slack channels | #a #b | one two |" in doc.text.splitlines()  # no empty cell for the layout before <td>


@pytest.mark.parametrize(
    ("page", "why"),
    [
        ("<p>Caf\u00e9 \u2013 na\u00efve</p>".encode(), "UTF-8 with no declaration (libxml2 alone reads Latin-1)"),
        ('<meta charset="windows-1252"><p>Caf\u00e9 \u2013 na\u00efve</p>'.encode("cp1252"), "a declared charset"),
    ],
)
def test_html_encoding_is_detected(page, why):
    assert load(page, "cafe.html").text == "Caf\u00e9 \u2013 na\u00efve", why


@pytest.mark.parametrize(
    ("declaration", "codec"),
    [(b"", "cp1252"), (b'<meta charset="cp437">', "cp437"), (b'<meta charset="no-such-charset">', "cp1252")],
    ids=["windows-1252-undeclared", "a-charset-libxml2-does-not-know", "a-bogus-charset"],
)
def test_html_in_any_charset_python_knows_is_read_not_fatal(declaration, codec):
    # Python's codec names (cp437, mac_roman, ...) made lxml raise LookupError, which stopped the whole ingest run.
    body = b"\x93Quoted\x94 \x96 caf\xe9"
    assert load(declaration + b"<p>" + body + b"</p>", "legacy.html").text == body.decode(codec)


def test_deeply_nested_html_keeps_all_its_text():
    # lxml's tree stops at 2,048 levels and drops what is below; the loader reads parser events, with no limit
    doc = load(b"<div>a" * 5000 + b"<p>The end.</p>", "deep.html")
    assert doc.text.count("a") == 5000
    assert doc.text.endswith("The end.")


# --- PDF ------------------------------------------------------------------------------


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer)
    pdf.setTitle(title or "")  # reportlab's default title is "untitled"
    for text in pages:
        pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _dense_pdf(words: int) -> bytes:
    """One page of ``words`` text operators: a few kilobytes once compressed."""
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pageCompression=1)
    text = pdf.beginText(72, 700)
    for _ in range(words):
        text.textOut("word ")
    pdf.drawText(text)
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def test_a_pdf_page_of_drawing_operators_is_not_parsed_for_text():
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter(clone_from=io.BytesIO(make_pdf(["Intro text.", "figure"])))
    figure = DecodedStreamObject()
    figure.set_data(b"".join(b"%d 10 m %d 20 l S\n" % (i, i) for i in range(300_000)))  # a map: 900,000 operators
    writer.pages[1][NameObject("/Contents")] = writer._add_object(figure)
    buffer = io.BytesIO()
    writer.write(buffer)
    doc = load_bytes(buffer.getvalue(), name="map.pdf", max_bytes=50_000_000)  # pypdf alone would stop at its limit
    assert doc.text == "## Page 1\n\nIntro text."


def test_a_docx_that_expands_past_the_size_limit_is_refused_before_it_is_parsed():
    import docx

    document = docx.Document()
    document.add_paragraph("Holiday " * 300_000)  # 3 MB of XML, a few kilobytes zipped
    buffer = io.BytesIO()
    document.save(buffer)
    assert len(buffer.getvalue()) < 100_000
    with pytest.raises(UnreadableFile, match=r"DOCX too large once decompressed \(\d\.\d MB of XML; the file-size limit of 1\.0 MB"):
        load_bytes(buffer.getvalue(), name="bomb.docx", max_bytes=1_000_000)
    assert load_bytes(buffer.getvalue(), name="big.docx", max_bytes=10_000_000).text.startswith("Holiday Holiday")


def test_pdf_content_that_expands_past_the_size_limit_is_refused_before_it_is_read():
    data = _dense_pdf(30_000)  # about 2 KB that expand to about 400 KB of page content
    assert len(data) < 10_000
    with pytest.raises(UnreadableFile, match=r"PDF content too large once decompressed \(over 0.1 MB by page 1"):
        load_bytes(data, name="bomb.pdf", max_bytes=100_000)


def test_a_pdf_that_takes_too_long_to_read_is_refused_with_its_page(monkeypatch):
    monkeypatch.setattr(loaders, "READ_SECONDS", 0.05)
    with pytest.raises(UnreadableFile, match=r"PDF took longer than 0.05 s to read \(at page 1 of 1\)"):
        load_bytes(_dense_pdf(30_000), name="slow.pdf", max_bytes=10_000_000)


def test_pdf_text_is_split_into_page_sections():
    data = make_pdf(
        ["Receipts are required for expenses over fifty dollars.", "Reimbursement arrives within two weeks."],
        title="Expense Policy",
    )
    doc = load(data, "expenses.pdf")

    assert doc.kind == "pdf"
    assert doc.title == "Expense Policy"
    assert doc.text == (
        "## Page 1\n\nReceipts are required for expenses over fifty dollars.\n\n"
        "## Page 2\n\nReimbursement arrives within two weeks."
    )


def test_pdf_without_title_uses_stem_and_skips_blank_pages():
    data = make_pdf(["First page text.", "", "Third page text."])
    doc = load(data, "handout.pdf")
    assert doc.title == "handout"
    assert "## Page 1\n\nFirst page text." in doc.text
    assert "## Page 2" not in doc.text
    assert "## Page 3\n\nThird page text." in doc.text


def test_pdf_with_no_text_is_unreadable():
    with pytest.raises(UnreadableFile, match="no extractable text"):
        load(make_pdf([""]), "scan.pdf")


# --- DOCX -----------------------------------------------------------------------------


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_paragraph("Travel Guide", style="Title")
    document.add_heading("Booking", level=1)
    document.add_paragraph("Book flights through the travel portal.")
    document.add_heading("Economy", level=2)
    document.add_paragraph("Fly economy on trips under six hours.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Trip", "Class"
    table.cell(1, 0).text, table.cell(1, 1).text = "Short", "Economy"
    document.add_paragraph("Pack light", style="List Bullet")
    document.add_paragraph("Keep receipts", style="List Number")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_title_headings_table_and_lists():
    doc = load(make_docx(), "travel.docx")

    assert doc.kind == "docx"
    assert doc.title == "Travel Guide"
    assert doc.text == (
        "# Travel Guide\n\n"
        "# Booking\n\n"
        "Book flights through the travel portal.\n\n"
        "## Economy\n\n"
        "Fly economy on trips under six hours.\n\n"
        "| Trip | Class |\n"
        "| Short | Economy |\n\n"
        "- Pack light\n"
        "- Keep receipts"
    )


@pytest.mark.timeout(60)  # a guard against a hang, not a speed target: these took minutes to hours before
@pytest.mark.parametrize(
    "opener",
    ["{{ ", "{{< a ", "{% a ", "{# ", "{/* ", "<!-- ", "[a](", "![a](", "[", "<http://", "<script>", "{% comment %}"],
    ids=["liquid-output", "hugo", "liquid-tag", "jinja-comment", "mdx-comment", "html-comment", "link", "image",
         "bracket", "autolink", "script", "liquid-comment"],
)
def test_markup_left_open_thousands_of_times_is_read_in_one_pass(opener):
    text = ("Sick leave is unlimited. " + opener * 200_000).encode()
    try:
        doc = load(text, "open.md", max_bytes=10 * MB)
    except UnreadableFile as exc:  # refusing it with a reason is fine too; hanging is not
        assert str(exc)
    else:
        assert doc.text.startswith("Sick leave is unlimited.")


# --- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "name", "reason"),
    [
        (b"", "empty.md", "empty file"),
        (b"   \n\t\n  ", "blank.txt", "empty file"),
        (b"text\x00with\x00nul bytes", "binary.txt", "binary content"),
        (b"caf\xe9 au lait", "latin1.md", "not valid UTF-8"),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog", "garbage.pdf", "broken PDF"),
        (b"hello, I am not a PDF", "fake.pdf", "broken PDF"),
        (b"PK\x03\x04 definitely not a zip", "garbage.docx", "broken DOCX"),
        (b"#!/bin/sh\necho hi\n", "script.sh", "unsupported file type '.sh'"),
        (b"all: build\n", "Makefile", "unsupported file type"),
        (
            b"---\ntitle: Only meta\n---\n{% include nav.html %}\n{{ content }}\n<div></div>\n",
            "hollow.md",
            "no readable text",
        ),
    ],
    ids=[
        "empty",
        "whitespace",
        "nul-bytes",
        "invalid-utf8",
        "truncated-pdf",
        "not-a-pdf",
        "garbage-docx",
        "unsupported-suffix",
        "no-suffix",
        "only-front-matter-and-liquid",
    ],
)
def test_unreadable_inputs_are_refused_with_a_reason(data, name, reason):
    with pytest.raises(UnreadableFile) as excinfo:
        load(data, name)
    assert reason in str(excinfo.value)


def test_truncated_real_pdf_is_refused():
    data = make_pdf(["Some text that will be cut off."])
    with pytest.raises(UnreadableFile, match="broken PDF"):
        load(data[: len(data) // 2], "cut.pdf")


def test_truncated_real_docx_is_refused():
    data = make_docx()
    with pytest.raises(UnreadableFile, match="broken DOCX"):
        load(data[: len(data) // 2], "cut.docx")


def test_file_over_max_bytes_is_refused():
    data = ("word " * 1000).encode()
    with pytest.raises(UnreadableFile, match="too large"):
        load(data, "big.md", max_bytes=len(data) - 1)
    assert load(data, "big.md", max_bytes=len(data)).text.startswith("word")


def test_kind_of_is_case_insensitive():
    from pathlib import Path

    assert kind_of(Path("A.MD")) == "markdown"
    assert kind_of(Path("Onboarding.MDX")) == "markdown"
    assert kind_of(Path("b.Docx")) == "docx"
    assert kind_of(Path("c.png")) is None


# --- hostile files: any parser error is the file's own failure ----------------------------


def _docx_with_renamed_body() -> bytes:
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(make_docx()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "word/document.xml":
                data = data.replace(b"<w:body>", b"<w:bodx>").replace(b"</w:body>", b"</w:bodx>")
            target.writestr(item, data)
    return buffer.getvalue()


@pytest.mark.parametrize("front_matter", ["[" * 5000, "[" * 5000 + "]" * 5000, "{a: [b"], ids=["unclosed", "5000-deep", "broken"])
def test_a_page_with_unreadable_front_matter_is_refused(front_matter):
    # Indexed with its text alone (commit f79e6a5), such a page lost its audience and was shown to everyone.
    with pytest.raises(UnreadableFile) as excinfo:
        load(f"---\ntitle: {front_matter}\n---\n# Deep\n\nText.\n".encode(), "deep.md")
    assert str(excinfo.value).startswith("front matter is not valid YAML: ")


@pytest.mark.parametrize(
    ("make", "name", "reason"),
    [
        # pypdf raises NotImplementedError and DeprecationError here, neither a PyPdfError.
        (lambda: make_pdf(["Some text."]).replace(b"/ASCII85Decode", b"/ASCII85Decade"), "a85.pdf",
         "broken PDF (NotImplementedError"),
        (lambda: make_pdf(["Some text."]).replace(b"/FlateDecode", b"/Fl"), "fl.pdf", "broken PDF (DeprecationError"),
        (_docx_with_renamed_body, "nobody.docx", "broken DOCX (AttributeError"),
    ],
    ids=["pdf-bad-filter", "pdf-removed-filter-name", "docx-without-body"],
)
def test_hostile_files_are_refused_with_a_reason(make, name, reason):
    with pytest.raises(UnreadableFile) as excinfo:
        load(make(), name)
    assert str(excinfo.value).startswith(reason), str(excinfo.value)


@pytest.mark.parametrize("key", ["Audience", "AUDIENCE", " audience"])
def test_an_audience_key_in_another_case_still_restricts_the_page(key):
    """Found by review: `Audience: [hr]` was valid YAML read as no audience, so the page went to everyone."""
    loaded = load_bytes(f"---\n{key}: [hr]\n---\n# Pay\n\nSalary bands.\n".encode(), name="pay.md", max_bytes=1_000_000)
    assert loaded.metadata["audience"] == ["hr"]


@pytest.mark.parametrize("key", ["audiences", "audiance", "audince", "Audiense"])
def test_a_misspelt_audience_key_is_refused_not_published_to_everyone(key):
    with pytest.raises(UnreadableFile, match=f"'{key.lower()}' but no 'audience' key"):
        load_bytes(f"---\n{key}: [hr]\n---\n# Pay\n\nSalary bands.\n".encode(), name="pay.md", max_bytes=1_000_000)


def test_unrelated_front_matter_keys_are_not_mistaken_for_an_audience():
    loaded = load_bytes(b"---\ntitle: Pay\nauthor: hr\naudit: yearly\n---\n# Pay\n\nSalary bands.\n", name="pay.md", max_bytes=1_000_000)
    assert "audience" not in loaded.metadata
