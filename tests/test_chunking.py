"""Chunking: passages follow the headings, keep code and tables whole, fit the budget, have stable ids."""

from __future__ import annotations

from assistant.chunking import chunk_id, chunk_markdown, locate, search_keys, sections


def count_words(text: str) -> int:
    return len(text.split())


def chunk(markdown: str, *, source: str = "doc.md", title: str = "Doc", **kwargs):
    return chunk_markdown(markdown, source=source, title=title, count_tokens=count_words, **kwargs)


NESTED = """\
# Handbook

Welcome text.

## Benefits

Benefit text.

### Dental

Dental text.

#### Orthodontics

Braces text.

## Desks

Desk text.

# Appendix

Appendix text.
"""


def test_nested_headings_give_section_paths():
    chunks = chunk(NESTED, title="Handbook")
    assert [(c.section, c.text) for c in chunks] == [
        ("", "Welcome text."),
        ("Benefits", "Benefit text."),
        ("Benefits > Dental", "Dental text."),
        ("Benefits > Dental > Orthodontics", "Braces text."),
        ("Desks", "Desk text."),
        ("Appendix", "Appendix text."),
    ]
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_title_different_from_first_h1_keeps_the_h1_in_the_path():
    chunks = chunk(NESTED, title="Employee Guide")
    assert [c.section for c in chunks][:3] == ["Handbook", "Handbook > Benefits", "Handbook > Benefits > Dental"]


def test_title_equal_to_first_h1_is_not_repeated_in_section_or_embedding_text():
    chunks = chunk("# Benefits\n\n## Dental\n\nDental plans cover cleanings.\n", title="Benefits")
    assert len(chunks) == 1
    assert chunks[0].section == "Dental"
    assert chunks[0].embedding_text("Benefits") == "Benefits > Dental\n\nDental plans cover cleanings."


def test_embedding_text_without_title_or_section_is_the_text():
    chunks = chunk("Just a paragraph.\n", title="")
    assert chunks[0].embedding_text("") == "Just a paragraph."


CODE_DOC = """\
# Setup

Install the tools:

```bash
# install dependencies
brew install git
## also not a heading
```

Then restart.

## Next

Next text.
"""


def test_hash_lines_inside_fenced_code_are_not_headings():
    heading_paths = [path for path, _ in sections(CODE_DOC)]
    assert ["Setup"] in heading_paths and ["Setup", "Next"] in heading_paths
    assert not any("install dependencies" in part for path in heading_paths for part in path)

    chunks = chunk(CODE_DOC, title="Setup")
    assert [c.section for c in chunks] == ["", "Next"]
    code = "```bash\n# install dependencies\nbrew install git\n## also not a heading\n```"
    assert code in chunks[0].text
    assert chunks[0].text.startswith("Install the tools:") and chunks[0].text.endswith("Then restart.")


def test_tilde_fence_hides_headings_too():
    chunks = chunk("# A\n\n~~~\n# not a heading\n~~~\n\n# B\n\nb text\n", title="Doc")
    assert [(c.section, c.text) for c in chunks] == [("A", "~~~\n# not a heading\n~~~"), ("B", "b text")]


def test_longer_fence_containing_a_shorter_one_stays_code():
    markdown = "# A\n\n````markdown\n```\n# x\n```\n````\n\n# B\n\nb\n"
    chunks = chunk(markdown, title="Doc")
    assert [c.section for c in chunks] == ["A", "B"]


def test_markdown_table_stays_in_one_chunk_when_it_fits():
    table = "\n".join(
        ["| Country | Days | Notes |", "|---|---|---|"] + [f"| C{i} | {20 + i} | row {i} |" for i in range(8)]
    )
    markdown = f"# PTO\n\nAllowance by country:\n\n{table}\n\nAsk People Ops.\n"
    chunks = chunk(markdown, title="PTO", max_tokens=200)
    assert len(chunks) == 1
    assert table in chunks[0].text


def test_long_section_is_split_within_budget():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(30)) + "." for i in range(12)]
    markdown = "# Travel\n\n## Long policy\n\n" + "\n\n".join(paragraphs) + "\n"
    max_tokens = 70
    chunks = chunk(markdown, title="Travel", max_tokens=max_tokens, overlap_tokens=5)

    assert len(chunks) > 3
    assert all(c.section == "Long policy" for c in chunks)
    assert all(count_words(c.text) <= max_tokens for c in chunks)
    assert all(count_words(c.embedding_text("Travel")) <= max_tokens for c in chunks)
    # Nothing is lost: every paragraph's words are somewhere.
    joined = " ".join(c.text for c in chunks)
    assert all(f"p{i}w29" in joined for i in range(12))
    assert len({c.id for c in chunks}) == len(chunks)


def test_one_long_paragraph_is_split_at_sentences():
    sentences = [f"Sentence {i} has exactly seven words here." for i in range(20)]
    chunks = chunk("# Rules\n\n" + " ".join(sentences) + "\n", title="Rules", max_tokens=40, overlap_tokens=0)
    assert len(chunks) >= 4
    assert all(count_words(c.text) <= 40 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)


def test_ids_are_stable_across_runs():
    first = chunk(NESTED, source="hb.md", title="Handbook")
    second = chunk(NESTED, source="hb.md", title="Handbook")
    assert [c.id for c in first] == [c.id for c in second]
    assert first[0].id == chunk_id("hb.md", "", "Welcome text.")


def test_ids_differ_when_source_or_text_or_section_differ():
    base = {c.text: c.id for c in chunk(NESTED, source="hb.md", title="Handbook")}
    other_source = {c.text: c.id for c in chunk(NESTED, source="other/hb.md", title="Handbook")}
    edited = {c.text: c.id for c in chunk(NESTED.replace("Desk text.", "Desk text, edited."), source="hb.md", title="Handbook")}

    assert set(base.values()).isdisjoint(other_source.values())
    assert base["Desk text."] != edited["Desk text, edited."]
    # Untouched sections keep their ids when another section is edited.
    assert base["Dental text."] == edited["Dental text."]
    assert chunk_id("a.md", "S1", "same") != chunk_id("a.md", "S2", "same")


def test_duplicated_identical_sections_are_stored_once():
    markdown = "# FAQ\n\n## Contact\n\nEmail help@example.com.\n\n## Contact\n\nEmail help@example.com.\n\n## Other\n\nOther.\n"
    chunks = chunk(markdown, title="FAQ")
    assert [(c.section, c.text) for c in chunks] == [("Contact", "Email help@example.com."), ("Other", "Other.")]
    assert [c.index for c in chunks] == [0, 1]


def test_heading_without_body_gives_no_chunk():
    chunks = chunk("# A\n\n## Empty\n\n## Full\n\nbody\n", title="A")
    assert [(c.section, c.text) for c in chunks] == [("Full", "body")]


def test_empty_markdown_gives_no_chunks():
    assert chunk("", title="x") == []
    assert chunk("# Only a heading\n", title="x") == []


# --- search keys ------------------------------------------------------------------------------------


def test_search_keys_are_sentence_pairs_of_each_paragraph_and_table_rows():
    text = (
        "Book vacation in the HR portal. Tell your manager two weeks ahead. Sick days need no booking.\n\n"
        "| Topic | Team |\n| --- | --- |\n| Laptops | IT |\n| Payroll | People Ops |\n\n"
        "Too short here.\n\n"
        "One paragraph of a single sentence with enough words."
    )
    assert search_keys(text) == [
        "| Laptops | IT |",
        "| Payroll | People Ops |",
        "Book vacation in the HR portal. Tell your manager two weeks ahead.",
        "Tell your manager two weeks ahead. Sick days need no booking.",
        "One paragraph of a single sentence with enough words.",
    ]


def test_a_passage_that_is_one_window_gets_no_key_and_zero_sentences_turns_keys_off():
    assert search_keys("Laptops are replaced every three years. Ask IT.") == []
    assert search_keys("Book vacation in the HR portal. Tell your manager. Sick days need no booking.", 0) == []
    assert search_keys("A. B. C.", 3) == []  # under min_words


def test_code_blocks_and_a_dash_line_under_a_row_make_no_keys():
    text = (
        "Run these first. Then go on to the next step.\n\n```bash\nmake setup. Then run make test.\n\n"
        "More code. Here it is.\n```\n\n| not a table |\n---\n\nAfter it all. The end is here."
    )
    assert search_keys(text) == ["Run these first. Then go on to the next step.", "After it all. The end is here."]


def test_search_keys_of_a_long_paragraph_with_wider_windows():
    text = "First one is here. Second one is here. Third one is here. Fourth one is here."
    assert search_keys(text, 3) == [
        "First one is here. Second one is here. Third one is here.",
        "Second one is here. Third one is here. Fourth one is here.",
    ]


def test_a_search_key_is_located_in_its_passage_whatever_the_whitespace_between_its_words():
    text = "Laptops > Support\n\nAsk IT for help.  They are\n available 6am-9pm ET.\n\n| Desk | Hours |"
    for key in search_keys(text.split("\n\n", 1)[1]):
        begin, end = locate(text, key, len("Laptops > Support\n\n"))
        assert " ".join(text[begin:end].split()) == key
    assert locate(text, "They are available 6am-9pm ET.") == (text.index("They"), text.index("ET.") + 3)
    assert locate(text, "Support", start=20) is None, "a key is looked for in the passage, not its headings"
    assert locate(text, "They are open 24/7.") is None
    assert locate(text, "   ") is None
    assert locate("Restart it. Art.", "art") is None, "not inside a longer word"
    assert locate("Restart it. Art class.", "Art") == (12, 15)
    quoted = "Note\n\n> Contractors must use\n> gsa.gov email."
    assert locate(quoted, "Contractors must use gsa.gov email.") == (8, len(quoted)), "a block quote's > between lines"
