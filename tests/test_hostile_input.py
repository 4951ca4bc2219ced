"""Hostile or malformed text is handled in one pass: no document or message can make ingest or an answer hang.

Each case took seconds to hours before (quadratic or worse backtracking or
re-scanning); the timeout is a guard against a hang, not a speed target.
"""

from __future__ import annotations

import pytest

from assistant.chunking import MAX_CHARS_PER_TOKEN, chunk_markdown
from assistant.loaders import load_bytes
from assistant.prompting import format_history, neutralise
from assistant.quotes import ANSWER_TYPES, _bm25, answer_types, split_passage, split_sentences

N = 200_000

MARKDOWN = {
    "hugo-name": "{{< " + "a" * N,
    "hugo-spaces": "{{<" + " " * N + "!",
    "liquid-name": "{% " + "a" * N,
    "inline-tags-on-one-line": "x {% a %} " * 160_000,
    "heading-ids-spaces": "a" + " " * N + "b",
    "heading-spaces": "# a" + " " * N + "b",
    "admonition-spaces": ":::a b" + " " * N + "c",
    "script-without-end": "<script " * 150_000,
    "reference-definition": "[a\n" * (N // 3),
    "mdx-export": "export const a" + " " * 20_000 + "b",
    "mdx-import": "import 'x'" + " " * N + "y",
    "unclosed-fences": "```a\n" * N,  # an info string: none of them closes another
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", MARKDOWN.values(), ids=MARKDOWN.keys())
def test_hostile_markdown_is_loaded_and_chunked_in_one_pass(text):
    doc = load_bytes(("Sick leave is unlimited.\n\n" + text).encode(), name="hostile.md", max_bytes=10_000_000)
    assert "Sick leave is unlimited." in doc.text
    chunks = chunk_markdown(doc.text, source="hostile.md", title=doc.title, count_tokens=lambda t: len(t.split()))
    assert chunks


@pytest.mark.timeout(60)
def test_runs_of_blank_pieces_do_not_pile_up_when_a_section_is_split():
    text = "".join(f"w{i}" + " " * 800 for i in range(300))  # every piece of spaces counts as no token
    chunks = chunk_markdown(text, source="spaces.md", title="Spaces", count_tokens=lambda t: len(t.split()), max_tokens=64)
    assert {word for chunk in chunks for word in chunk.text.split()} == {f"w{i}" for i in range(300)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("run", ["a" * 1_000_000, "x" + " " * 1_000_000 + "y", ("w" * 150 + " ") * 7_000], ids=["word", "spaces", "long-words"])
def test_no_chunk_is_longer_than_its_token_budget_allows_in_characters(run):
    # The tokenizer counts a word over 100 characters as one token and whitespace as none: a megabyte was one chunk.
    chunks = chunk_markdown("Sick leave is unlimited.\n\n" + run, source="long.md", title="Long", count_tokens=lambda t: len(t.split()))
    assert max(len(chunk.text) for chunk in chunks) <= 220 * MAX_CHARS_PER_TOKEN
    assert "Sick leave is unlimited." in chunks[0].text


@pytest.mark.timeout(60)
def test_yaml_aliases_in_the_audience_are_not_expanded():
    levels = ["l0: &l0 [" + ", ".join(["x"] * 10) + "]"]
    levels += [f"l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 10) + "]" for k in range(1, 9)]
    text = "---\n" + "\n".join(levels) + "\naudience: [*l8, hr]\n---\nBody text.\n"
    doc = load_bytes(text.encode(), name="aliases.md", max_bytes=1_000_000)
    assert doc.metadata["audience"] == ["hr"]


@pytest.mark.timeout(60)
def test_a_retrieved_passage_or_message_full_of_spaces_is_answered_in_one_pass():
    units = split_passage("| a | b |\n|---" + " " * 64_000 + "x |\n\nSick leave is unlimited.")
    assert any("Sick leave" in unit.text for unit in units)
    assert len(split_sentences("See e.g. A " * 80_000)) == 1  # abbreviations do not end it
    assert neutralise("<" + " " * 64_000 + "passage>").startswith("&lt;")
    assert format_history([("user", "a" + " " * 64_000 + "b [1]")]).count("[1]") == 0
    scores = _bm25([["leave"] * 400_000, ["sick", "leave"]], [f"t{i}" for i in range(900)] + ["sick"])
    assert scores[1] > scores[0]
    contact = ANSWER_TYPES[0][1]
    assert contact.search("1" + " " * 64_000 + "x") is None  # no phone number: one digit, then spaces
    assert contact.search("(" * 64_000 + "1") is None
    assert contact.search("a." * 40_000) is None  # an address restarted at every dot was quadratic: 80 KB, 14 s
    assert len(answer_types("who ask " * 500 + "when how much")) == 3


HTML = {
    "unclosed-tags": "a<a " * 40_000,
    "unclosed-attribute": 'x<a b="' * 40_000,
    "unclosed-comments": "a<!--" * 40_000,
    "many-paragraphs": "<p>a</p>" * N,  # editing a parsed tree element by element was quadratic: 20,000 took 12 s
    "nested-rows": "<table>" + "<tr><td>a" * 32_000,  # cubic that way
    "nested-headings": "<h2>a" * N,
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text", HTML.values(), ids=HTML.keys())
def test_malformed_html_is_parsed_in_one_pass(text):
    doc = load_bytes(("<p>Sick leave is unlimited.</p>" + text).encode(), name="hostile.html", max_bytes=10_000_000)
    assert "Sick leave is unlimited." in doc.text


def test_merged_docx_cells_are_read_once_as_stored():
    import io

    import docx

    document = docx.Document()
    document.add_paragraph("Per diem by city.")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([("City", "Meals", "Hotel"), ("London", "GBP 75", "GBP 200"), ("", "", "")]):
        for c, text in enumerate(row):
            table.cell(r, c).text = text
    table.cell(2, 0).merge(table.cell(1, 0))  # London spans two rows
    table.cell(2, 1).merge(table.cell(2, 2)).text = "ask travel"  # one cell spans two columns
    buffer = io.BytesIO()
    document.save(buffer)
    doc = load_bytes(buffer.getvalue(), name="per-diem.docx", max_bytes=1_000_000)
    # A vertically merged cell repeats its text, so a row read alone keeps it; a spanned cell is not repeated.
    assert doc.text.splitlines()[-3:] == ["| City | Meals | Hotel |", "| London | GBP 75 | GBP 200 |", "| London | ask travel |"]


@pytest.mark.timeout(60)
def test_html_that_libxml2_reads_in_quadratic_time_stops_at_the_deadline(monkeypatch):
    from assistant import loaders
    from assistant.errors import UnreadableFile

    monkeypatch.setattr(loaders, "READ_SECONDS", 2.0)
    page = "<p>Sick leave is unlimited.</p>" + "<div>" * 200_000 + "</span>" * 200_000  # 2.4 MB: minutes unbounded
    with pytest.raises(UnreadableFile, match=r"HTML took longer than 2 s to read \(at [\d,]+ of [\d,]+ bytes\)"):
        load_bytes(page.encode(), name="nested.html", max_bytes=10_000_000)
