"""Evaluation: the figures of ``onboard eval`` on hand-built rows, the dataset reader, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_kb import write_docs
from typer.testing import CliRunner

from assistant.answer import Answer, Citation
from assistant.answering import AnswerConfig, Assistant
from assistant.evaluation import (
    Case,
    calibrate,
    cited_in_order,
    compare,
    evaluate,
    evaluate_answers,
    load_dataset,
    mcnemar_exact,
    missing_gold_files,
    repeated_line,
    summarise,
    summarise_answers,
    words,
)
from assistant.ingest import ingest
from assistant.retrieval import KnowledgeBase
from onboard.cli import app


def row(answerable: bool, abstained: bool, first_hit_rank: int | None, latency_ms: float) -> dict:
    hits = {n: first_hit_rank is not None and first_hit_rank <= n for n in (1, 3, 5)}
    return {
        "answerable": answerable,
        "abstained": abstained,
        "first_hit_rank": first_hit_rank,
        "hits": hits,
        "latency_ms": latency_ms,
    }


# 4 answerable questions, 2 unanswerable ones.
ROWS = [
    row(True, False, 1, 10.0),  # A1: right file first, answered
    row(True, False, 2, 20.0),  # A2: right file second, answered
    row(True, True, 4, 30.0),  # A3: right file fourth, but abstained
    row(True, False, None, 40.0),  # A4: right file never retrieved, answered anyway
    row(False, True, None, 50.0),  # U1: unanswerable, abstained (correct)
    row(False, False, None, 60.0),  # U2: unanswerable, answered (wrong)
]


def test_summarise_by_hand():
    summary = summarise(ROWS)

    assert summary["n"] == 6
    assert summary["n_answerable"] == 4
    assert summary["n_unanswerable"] == 2
    # Hit within the top n, over the 4 answerable rows: @1 only A1; @3 A1, A2; @5 A1, A2, A3.
    assert summary["recall_at_1"] == 0.25
    assert summary["recall_at_3"] == 0.5
    assert summary["recall_at_5"] == 0.75
    # MRR = (1/1 + 1/2 + 1/4 + 0) / 4 = 1.75 / 4
    assert summary["mrr"] == 0.4375
    # Abstained: A3 and U1; of those only U1 is unanswerable -> 1/2.
    assert summary["abstain_precision"] == 0.5
    # Unanswerable: U1 and U2; U1 abstained -> 1/2.
    assert summary["abstain_recall"] == 0.5
    # Answerable and answered: A1, A2, A4 -> 3/4.
    assert summary["answered_rate"] == 0.75
    # Latencies 10..60: median 35; p95 (linear) = 50 + 0.75 * 10.
    assert summary["latency_ms_p50"] == 35.0
    assert summary["latency_ms_p95"] == 57.5


def test_summarise_rounds_to_four_places():
    rows = [row(True, False, 1, 1.0), row(True, False, None, 1.0), row(True, False, 3, 1.0)]
    summary = summarise(rows)
    assert summary["recall_at_1"] == 0.3333  # 1/3
    assert summary["recall_at_3"] == 0.6667  # 2/3
    assert summary["mrr"] == 0.4444  # (1 + 1/3) / 3


def test_summarise_undefined_shares_are_none():
    only_answerable_answered = summarise([row(True, False, 1, 5.0)])
    assert only_answerable_answered["abstain_precision"] is None  # nothing abstained
    assert only_answerable_answered["abstain_recall"] is None  # no unanswerable question
    assert only_answerable_answered["recall_at_1"] == 1.0

    only_unanswerable = summarise([row(False, True, None, 5.0)])
    assert only_unanswerable["recall_at_1"] is None
    assert only_unanswerable["mrr"] is None
    assert only_unanswerable["answered_rate"] is None
    assert only_unanswerable["abstain_precision"] == 1.0
    assert only_unanswerable["abstain_recall"] == 1.0

    empty = summarise([])
    assert empty["n"] == 0 and empty["recall_at_1"] is None
    assert empty["latency_ms_p50"] == 0.0


# --- datasets ---------------------------------------------------------------------------


def test_load_dataset_reads_cases(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(
        '{"id": 1, "question": "how much PTO", "gold_files": ["time-off.md"], "kind": "number"}\n'
        "\n"
        '{"id": "u1", "question": "gym membership?", "gold_files": []}\n'
        '{"id": "u2", "question": "parking?"}\n',
        encoding="utf-8",
    )
    cases = load_dataset(path)
    assert cases == [
        Case("1", "how much PTO", ("time-off.md",)),
        Case("u1", "gym membership?", ()),
        Case("u2", "parking?", ()),
    ]
    assert [c.answerable for c in cases] == [True, False, False]


@pytest.mark.parametrize(
    "bad_line",
    ['{"id": "x", "question": "unterminated"', '{"question": "no id", "gold_files": []}', '["not", "an", "object"]'],
    ids=["bad-json", "missing-id", "not-an-object"],
)
def test_load_dataset_names_the_malformed_line(tmp_path, bad_line):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "a", "question": "fine", "gold_files": []}\n\n' + bad_line + "\n", encoding="utf-8")
    with pytest.raises(ValueError) as excinfo:
        load_dataset(path)
    assert f"{path}:3:" in str(excinfo.value)


def test_load_dataset_refuses_an_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no questions"):
        load_dataset(path)


def test_load_dataset_refuses_gold_files_given_as_a_string(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text('{"id": "a", "question": "q", "gold_files": "a.md"}\n', encoding="utf-8")
    try:
        cases = load_dataset(path)
    except ValueError as exc:
        assert f"{path}:1:" in str(exc)
    else:
        assert cases[0].gold_files == ("a.md",)


# --- evaluate() with the fake embeddings -----------------------------------------------------------

CORPUS = {
    "time-off.md": "# Time off\n\nEveryone gets twenty days of paid vacation per year.\n",
    "it/laptop.md": "# Laptops\n\nIT ships a laptop before your first day. Broken hardware goes to the helpdesk.\n",
    "office/kitchen.md": "# Kitchen\n\nThe kitchen has free coffee and tea; the dishwasher runs at six.\n",
    "security/passwords.md": "# Passwords\n\nUse the company password manager and two-factor authentication.\n",
    "benefits/dental.md": "# Dental\n\nThe dental plan covers two cleanings a year.\n",
}


def test_evaluate_rows_follow_what_retrieval_returned(tmp_path, store, fake_embeddings, sqlite_engine):
    root = write_docs(tmp_path / "corpus", CORPUS)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(store, fake_embeddings)
    cases = [
        Case("q1", "the dishwasher runs at six", ("office/kitchen.md",)),
        Case("q2", "dental plan cleanings", ("benefits/dental.md",)),
        Case("q3", "xylophone glockenspiel qwerty", ()),
    ]
    summary, rows = evaluate(kb, cases, mode="keyword", k=3)

    assert [r["id"] for r in rows] == ["q1", "q2", "q3"]
    assert rows[0]["sources"][0] == "office/kitchen.md" and rows[0]["first_hit_rank"] == 1
    assert rows[0]["hits"] == {1: True, 3: True, 5: True}
    assert rows[2]["sources"] == [] and rows[2]["abstained"] is True and rows[2]["first_hit_rank"] is None
    assert summary["recall_at_1"] == 1.0 and summary["mrr"] == 1.0
    assert summary["abstain_recall"] == 1.0
    assert summary == summarise(rows)


# --- `onboard eval` end to end, with the configured local embedding model ---------------------------

DATASET = [
    {"id": "e1", "question": "how many vacation days do I get per year", "gold_files": ["time-off.md"]},
    {"id": "e2", "question": "who fixes a broken laptop", "gold_files": ["it/laptop.md"]},
    {"id": "e3", "question": "is there free coffee in the office", "gold_files": ["office/kitchen.md"]},
    {"id": "e4", "question": "how should I store my passwords", "gold_files": ["security/passwords.md"]},
    {"id": "e5", "question": "can I bring my dog to the office", "gold_files": []},
]

SUMMARY_KEYS = {
    "n",
    "recall_at_1",
    "recall_at_3",
    "recall_at_5",
    "mrr",
    "abstain_precision",
    "abstain_recall",
    "answered_rate",
    "latency_ms_p50",
    "latency_ms_p95",
}
SHARES = SUMMARY_KEYS - {"n", "latency_ms_p50", "latency_ms_p95"}


def run_eval_command(tmp_path) -> tuple[dict, dict]:
    """Run `onboard eval` on the tiny corpus; return (printed summary, --out file)."""
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text("\n".join(json.dumps(case) for case in DATASET) + "\n", encoding="utf-8")
    out = tmp_path / "results.json"

    result = CliRunner().invoke(
        app, ["eval", "--dataset", str(dataset), "--corpus", str(corpus), "--k", "3", "--out", str(out)]
    )

    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(result.stdout.strip())  # exactly one JSON object
    assert isinstance(summary, dict)
    assert SUMMARY_KEYS <= set(summary)
    assert summary["n"] == len(DATASET)
    assert summary["retriever"] == "hybrid" and summary["k"] == 3
    assert summary["corpus_files_failed"] == 0
    for key in SHARES:
        value = summary[key]
        assert value is None or 0.0 <= value <= 1.0, (key, value)
    assert summary["abstain_recall"] is not None and summary["recall_at_5"] is not None
    assert 0 <= summary["latency_ms_p50"] <= summary["latency_ms_p95"]

    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["summary"] == summary
    assert [q["id"] for q in written["questions"]] == [case["id"] for case in DATASET]
    for question in written["questions"]:
        assert {"answerable", "abstained", "first_hit_rank", "hits", "sources", "latency_ms"} <= set(question)
    assert [q["answerable"] for q in written["questions"]] == [True, True, True, True, False]
    # The temporary index did not touch the data folder.
    assert not (tmp_path / "data").exists()
    return summary, written


def test_onboard_eval_end_to_end(tmp_path):
    """With the local embedding model the default settings configure (nothing mocked)."""
    summary, _ = run_eval_command(tmp_path)
    assert summary["embedding_model"].startswith("local:")
    # A real sentence-embedding model finds these easy paraphrases.
    assert summary["recall_at_5"] >= 0.75


def test_onboard_eval_through_an_openai_compatible_endpoint(tmp_path, api_embeddings):
    server = api_embeddings
    summary, written = run_eval_command(tmp_path)

    assert summary["embedding_model"] == "openai:hashing-test"
    assert {body["model"] for body in server.requests} == {"hashing-test"}
    sent = server.inputs()
    assert "Kitchen\n\nThe kitchen has free coffee and tea; the dishwasher runs at six." in sent
    assert all(case["question"] in sent for case in DATASET)  # each question embedded as a query
    # The hashing embedding shares words with the gold passages of these questions.
    assert written["questions"][1]["sources"][0] == "it/laptop.md"


def test_onboard_eval_refuses_a_malformed_dataset_naming_the_line(tmp_path):
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text('{"id": "a", "question": "q", "gold_files": []}\n{"id": "b", "question": \n', encoding="utf-8")

    result = CliRunner().invoke(app, ["eval", "--dataset", str(dataset), "--corpus", str(corpus)])

    assert result.exit_code == 2
    assert f"{dataset}:2:" in result.stderr
    assert result.stdout == ""


def test_onboard_eval_refuses_an_unknown_retriever(tmp_path):
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text('{"id": "a", "question": "q", "gold_files": []}\n', encoding="utf-8")

    result = CliRunner().invoke(
        app, ["eval", "--dataset", str(dataset), "--corpus", str(corpus), "--retriever", "magic"]
    )

    assert result.exit_code == 2
    assert "--retriever must be hybrid, dense or keyword" in result.stderr


def test_onboard_eval_answers_scores_quotes_on_the_sample_handbook(tmp_path):
    """`--answers` runs the extractive answerer on every question and checks the gold quotes by hand."""
    root = Path(__file__).resolve().parent.parent
    dataset, corpus = root / "eval" / "sample_qa.jsonl", root / "onboard" / "sample_handbook"
    out = tmp_path / "answers.json"
    result = CliRunner().invoke(
        app, ["eval", "--dataset", str(dataset), "--corpus", str(corpus), "--answers", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads(result.stdout.strip())
    questions = json.loads(out.read_text(encoding="utf-8"))["questions"]
    cases = {c.id: c for c in load_dataset(dataset)}

    def collapse(text: str) -> str:
        return " ".join(text.split())

    hits = []
    for row in questions:
        case = cases[row["id"]]
        if case.answerable:
            hit = any(collapse(q) in collapse(row["answer"]["text"]) for q in case.gold_quotes)
            assert row["answer"]["quote_hit"] == hit
            hits.append(hit)
        if row["answer"]["abstained"]:
            assert "people" in row["answer"]["text"].lower()  # the abstention names the human contact
    assert summary["quote_hit_rate"] == round(sum(hits) / len(hits), 4)
    assert summary["quote_hit_rate"] > 0.3  # quoting real sentences finds many of the gold quotes
    assert summary["answers_failed"] == 0
    assert 0 <= summary["turn_latency_ms_p50"] <= summary["turn_latency_ms_p95"]


def test_onboard_eval_as_a_group_never_finds_documents_meant_for_others(tmp_path):
    corpus = write_docs(
        tmp_path / "corpus",
        {
            "pay.md": "# Payroll\n\nSalaries are paid on the 25th of every month.\n",
            "hr/bands.md": "---\naudience: hr\n---\n# Salary bands\n\nThe quokka matrix sets the salary bands each spring.\n",
        },
    )
    dataset = tmp_path / "qa.jsonl"
    dataset.write_text(
        json.dumps({"id": "h1", "question": "who sets the quokka matrix salary bands", "gold_files": ["hr/bands.md"]})
        + "\n",
        encoding="utf-8",
    )

    def run(*extra: str) -> tuple[dict, list[dict]]:
        out = tmp_path / "out.json"
        result = CliRunner().invoke(
            app, ["eval", "--dataset", str(dataset), "--corpus", str(corpus), "--out", str(out), *extra]
        )
        assert result.exit_code == 0, result.output
        written = json.loads(out.read_text(encoding="utf-8"))
        return written["summary"], written["questions"]

    summary, questions = run("--groups", "")
    assert summary["audiences"] == ["all"]
    assert "hr/bands.md" not in questions[0]["sources"] and summary["recall_at_5"] == 0.0
    summary, questions = run("--groups", "hr, managers")
    assert summary["audiences"] == ["all", "hr", "managers"]
    assert questions[0]["sources"][0] == "hr/bands.md" and summary["recall_at_1"] == 1.0
    summary, _ = run()
    assert summary["audiences"] is None and summary["recall_at_1"] == 1.0


# --- gold files the corpus does not hold, and --calibrate bounds ----------------------------------


def test_missing_gold_files_lists_those_not_indexed():
    cases = [Case("a", "q", ("x.md", "y.md")), Case("b", "q", ("y.md", "z/w.md")), Case("c", "q", ())]
    assert missing_gold_files(cases, ["y.md", "other.md"]) == ["x.md", "z/w.md"]
    assert missing_gold_files(cases, ["x.md", "y.md", "z/w.md"]) == []


@pytest.mark.parametrize("rate", [0, -1, 1.5])
def test_calibrate_refuses_a_rate_outside_zero_to_one(rate):
    with pytest.raises(ValueError, match="answered_rate"):
        calibrate([row(True, False, 1, 1.0)], rate)


def eval_command(tmp_path, dataset: list[dict], corpus: Path, *extra: str):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(case) for case in dataset) + "\n", encoding="utf-8")
    return CliRunner().invoke(app, ["eval", "--dataset", str(path), "--corpus", str(corpus), *extra])


def test_onboard_eval_warns_about_gold_files_missing_from_the_corpus(tmp_path, api_embeddings):
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    dataset = [*DATASET, {"id": "e6", "question": "where is the gym", "gold_files": ["office/gym.md"]}]

    result = eval_command(tmp_path, dataset, corpus)

    assert result.exit_code == 0, result.output
    assert "warning: 1 of the 5 gold files are missing or unreadable" in result.stderr
    assert result.stderr.rstrip().endswith("cannot score: office/gym.md")
    assert json.loads(result.stdout)["n"] == len(dataset)


def test_onboard_eval_fails_when_the_corpus_holds_none_of_the_gold_files(tmp_path, api_embeddings):
    write_docs(tmp_path / "corpus", CORPUS)
    wrong = write_docs(tmp_path / "elsewhere", {"readme.md": "# Readme\n\nNot the corpus.\n"})

    result = eval_command(tmp_path, DATASET, wrong)

    assert result.exit_code == 2
    assert "none of the 4 gold files" in result.stderr and "--corpus must be the folder" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("rate", ["1.5", "-1", "0"])
def test_onboard_eval_refuses_a_calibration_share_outside_zero_to_one(tmp_path, rate):
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    result = eval_command(tmp_path, DATASET, corpus, "--calibrate", rate)
    assert result.exit_code == 2
    assert "--calibrate must be a share of the answerable questions, above 0 and at most 1" in result.stderr


# --- answer figures: bands, citations, words, repeated lines, cited gold share ---------------------


def make_answer(text: str, sources: list[str], *, abstained: bool = False, cited: set[int] | None = None) -> Answer:
    citations = [
        Citation(n=n, source=src, title="", section="", url=None, chunk_id=f"c{n}", passage="",
                 cited=cited is None or n in cited)
        for n, src in enumerate(sources, 1)
    ]
    return Answer(text=text, citations=citations, abstained=abstained, answerer="extractive", model=None,
                  prompt_version="x", index_version=1, input_tokens=None, output_tokens=None, latency_ms=1.0,
                  ttft_ms=None)


def test_cited_in_order_lists_what_the_text_cites_in_marker_order():
    answer = make_answer("Dental is free. [3]\n\nVision too [1, 3]. See [9].", ["a.md", "b.md", "c/d.md"])
    # [3] first, then [1]; [2] is never cited; [9] has no passage.
    assert cited_in_order(answer) == [{"n": 3, "source": "c/d.md"}, {"n": 1, "source": "a.md"}]


def test_words_leave_out_markers_and_markdown_punctuation():
    assert words("> The plan pays **100%** of the premium. [2]\n\n| --- | --- |\n- $1,000 [1, 3]") == 8


@pytest.mark.parametrize(
    ("text", "repeated"),
    [
        ("The company pays 100% of the premium. [2]\nThe company pays 100% of the premium. [3]", True),
        ("- Dental: the company pays. [1]\n\n-   Dental:  the company pays.[4]", True),
        ("Dental: the company pays. [1]\nVision: the company pays. [2]", False),
        ("| a | b |\n| --- | --- |\n| 1 | 2 |\n\n| c | d |\n| --- | --- |\n| 3 | 4 |", False),  # rules, not lines
        ("```\nls\n```\n```\npwd\n```", False),
    ],
)
def test_repeated_line(text, repeated):
    assert repeated_line(text) is repeated


def answer_row(answerable: bool, abstained: bool, words: int, *, repeated=False, citations=(), gold=0,
               quote_hit=None) -> dict:
    return {"answerable": answerable, "abstained": abstained, "band": "abstained" if abstained else "answered",
            "quote_hit": quote_hit, "citations": [{"n": i, "source": s} for i, s in enumerate(citations, 1)],
            "cited_gold": gold, "retrieved_gold_at_5": answerable or None, "words": words,
            "repeated_line": repeated, "error": None, "latency_ms": 1.0}


def test_summarise_answers_new_figures_by_hand():
    rows = [
        answer_row(True, False, 10, citations=["g.md", "x.md"], gold=1, quote_hit=True),
        answer_row(True, False, 20, repeated=True, citations=["g.md"], gold=1, quote_hit=False),
        answer_row(True, False, 30, citations=["y.md"], gold=0, quote_hit=True),
        answer_row(True, False, 40, citations=["g.md"], gold=1, quote_hit=True),
        answer_row(True, True, 500, quote_hit=False),  # abstained: its words and lines do not count
        answer_row(False, False, 50, citations=["z.md", "z.md"], gold=0),  # unanswerable: its citations do not count
    ]
    summary = summarise_answers(rows)
    # Answered lengths 10, 20, 30, 40, 50: median 30; p90 (linear) = 40 + 0.6 * 10.
    assert summary["answer_words_p50"] == 30.0
    assert summary["answer_words_p90"] == 46.0
    # One answered answer of five repeats a line.
    assert summary["repeated_line_answers"] == 0.2 and summary["repeated_line_answers_n"] == 1
    # Citations of answerable questions: 5, of which 3 are gold files.
    assert summary["cited_gold_share"] == 0.6
    assert summary["bands"] == {"abstained": 1, "answered": 5}
    assert summary["quote_hit_rate"] == 0.6  # 3 of 5 answerable


def test_summarise_answers_when_nothing_was_answered():
    summary = summarise_answers([answer_row(True, True, 30)])
    assert summary["answer_words_p50"] is None and summary["repeated_line_answers"] is None
    assert summary["cited_gold_share"] is None


class RecordingAssistant:
    """A real extractive assistant that also records what each ``answer`` call received."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.calls: list[tuple[str, dict]] = []

    def answer(self, question: str, **kwargs) -> Answer:
        self.calls.append((question, kwargs))
        return self.assistant.answer(question, **kwargs)


def test_evaluate_answers_records_band_citations_words_and_passes_history(
    tmp_path, store, fake_embeddings, sqlite_engine
):
    root = write_docs(tmp_path / "corpus", CORPUS)
    ingest([root], store=store, embeddings=fake_embeddings, engine=sqlite_engine)
    kb = KnowledgeBase(store, fake_embeddings)
    kb.config = kb.config.model_copy(update={"mode": "keyword"})
    assistant = RecordingAssistant(Assistant(knowledge_base=kb, config=AnswerConfig()))
    history = (("user", "what does the dental plan cover?"), ("assistant", "Two cleanings a year. [1]"))
    cases = [
        Case("q1", "when does the dishwasher run in the kitchen", ("office/kitchen.md",), ("dishwasher runs at six",)),
        Case("q2", "and how many cleanings", ("benefits/dental.md",), ("two cleanings a year",), history),
        Case("q3", "xylophone glockenspiel qwerty", ()),
    ]

    summary, rows = evaluate_answers(assistant, cases)

    assert [call[1]["history"] for call in assistant.calls] == [[], list(history), []]
    assert [r["history_turns"] for r in rows] == [0, 2, 0]
    first = rows[0]
    assert first["band"] == "answered" and first["quote_hit"] is True
    assert first["citations"][0] == {"n": 1, "source": "office/kitchen.md"}
    assert [c["n"] for c in first["citations"]] == list(range(1, len(first["citations"]) + 1))
    assert first["cited_gold"] == sum(c["source"] == "office/kitchen.md" for c in first["citations"]) >= 1
    assert first["words"] == words(first["text"]) > 0
    assert rows[2]["band"] == "abstained" and rows[2]["citations"] == [] and rows[2]["cited_gold"] == 0
    cited = [c for r in rows[:2] for c in r["citations"]]
    gold = sum(r["cited_gold"] for r in rows[:2])
    assert summary["cited_gold_share"] == round(gold / len(cited), 4)
    assert summary["bands"]["abstained"] >= 1


def test_load_dataset_reads_history(tmp_path):
    path = tmp_path / "qa.jsonl"
    turns = [{"role": "user", "content": "how many sick days in the US?"}, {"role": "assistant", "content": "Ten. [1]"}]
    path.write_text(
        json.dumps({"id": "f1", "question": "and in Portugal?", "gold_files": ["pto.md"], "history": turns}) + "\n"
        + json.dumps({"id": "f2", "question": "how long is it?", "gold_files": [], "history": ["parental leave?"]})
        + "\n",
        encoding="utf-8",
    )
    cases = load_dataset(path)
    assert cases[0].history == (("user", "how many sick days in the US?"), ("assistant", "Ten. [1]"))
    assert cases[1].history == (("user", "parental leave?"),)


@pytest.mark.parametrize("history", ['"just a string"', '[{"role": "boss", "content": "x"}]', '[{"role": "user"}]'])
def test_load_dataset_names_a_malformed_history(tmp_path, history):
    path = tmp_path / "qa.jsonl"
    path.write_text(f'{{"id": "a", "question": "q", "gold_files": [], "history": {history}}}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=f"{path}:1:.*history"):
        load_dataset(path)


# --- compare: two configurations on the same questions ---------------------------------------------


def compared_row(i: int, answerable: bool, *, hit5: bool, abstained: bool, quote_hit: bool | None) -> dict:
    return {"id": f"q{i}", "answerable": answerable, "hits": {1: hit5, 3: hit5, 5: hit5},
            "answer": {"abstained": abstained, "quote_hit": quote_hit}}


def test_mcnemar_exact_p_values():
    # 1 against 6 discordant pairs: 2 * P(X <= 1 | n=7, p=1/2) = 2 * (1 + 7) / 128.
    assert mcnemar_exact(1, 6) == pytest.approx(0.125)
    assert mcnemar_exact(6, 1) == pytest.approx(0.125)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)


def test_compare_pairs_the_outcomes_question_by_question():
    # 10 answerable questions: A hits the quote on q0 only ... B on q1..q6 (6 B-only, 1 A-only, 3 neither).
    rows_a = [compared_row(i, True, hit5=True, abstained=i >= 8, quote_hit=i == 0) for i in range(10)]
    rows_b = [compared_row(i, True, hit5=True, abstained=False, quote_hit=1 <= i <= 6) for i in range(10)]
    # 2 unanswerable: A abstains on both, B on neither.
    rows_a += [compared_row(i, False, hit5=False, abstained=True, quote_hit=None) for i in (10, 11)]
    rows_b += [compared_row(i, False, hit5=False, abstained=False, quote_hit=None) for i in (10, 11)]
    summary_a = {"quote_hit_rate": 0.1, "answer_words_p50": 80.0, "bands": {"answered": 8, "abstained": 4}, "k": 5,
                 "with_history": {"n": 2, "recall_at_5": None, "bands": {"answered": 2}}}
    summary_b = {"quote_hit_rate": 0.6, "answer_words_p50": 61.5, "bands": {"answered": 12}, "k": 5,
                 "with_history": {"n": 2, "recall_at_5": 0.5, "bands": {"answered": 2}}}

    result = compare(summary_a, rows_a, summary_b, rows_b)

    assert result["figures"]["quote_hit_rate"] == {"a": 0.1, "b": 0.6, "diff": 0.5}
    assert result["figures"]["answer_words_p50"]["diff"] == -18.5
    assert result["figures"]["bands"]["diff"] == {"abstained": -4, "answered": 4}
    assert result["figures"]["with_history"]["diff"] == {"bands": None, "n": 0, "recall_at_5": None}
    assert result["figures"]["k"] == {"a": 5, "b": 5, "diff": 0}
    assert result["paired"]["quote_hit"] == {"n": 10, "a": 1, "b": 6, "a_only": 1, "b_only": 6, "p_value": 0.125}
    assert result["paired"]["answered"] == {"n": 10, "a": 8, "b": 10, "a_only": 0, "b_only": 2, "p_value": 0.5}
    assert result["paired"]["abstained"] == {"n": 2, "a": 2, "b": 0, "a_only": 2, "b_only": 0, "p_value": 0.5}
    assert result["paired"]["hit_at_5"]["p_value"] == 1.0  # no discordant pair


def test_compare_refuses_runs_over_different_questions():
    row_ = compared_row(0, True, hit5=True, abstained=False, quote_hit=True)
    with pytest.raises(ValueError, match="same questions"):
        compare({}, [row_], {}, [row_ | {"id": "other"}])


def test_onboard_eval_compare_runs_both_configurations_on_one_index(tmp_path, api_embeddings, monkeypatch):
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    a_env, b_env = tmp_path / "a.env", tmp_path / "b.env"
    a_env.write_text("# the shipped threshold\nONBOARD_RETRIEVAL__ABSTENTION__MIN_SIMILARITY=-1\n", encoding="utf-8")
    b_env.write_text("ONBOARD_RETRIEVAL__ABSTENTION__MIN_SIMILARITY=0.99\n", encoding="utf-8")
    monkeypatch.setenv("ONBOARD_RETRIEVAL__ABSTENTION__MIN_SIMILARITY", "0.5")  # the files win over the environment
    out = tmp_path / "compare.json"

    quotes = ["twenty days of paid vacation", "Broken hardware goes to the helpdesk", "free coffee and tea",
              "company password manager", ""]
    dataset = [case | {"gold_quote": quote} for case, quote in zip(DATASET, quotes, strict=True)]

    result = eval_command(tmp_path, dataset, corpus, "--compare", str(a_env), str(b_env), "--out", str(out))

    assert result.exit_code == 0, result.output + repr(result.exception)
    printed = json.loads(result.stdout)
    assert printed["shared_index"] is True
    assert printed["a"]["settings"] == {"ONBOARD_RETRIEVAL__ABSTENTION__MIN_SIMILARITY": "-1"}
    # A never abstains on a similarity this low; B abstains on everything.
    assert printed["a"]["summary"]["answers_answered_rate"] == 1.0
    assert printed["b"]["summary"]["answers_answered_rate"] == 0.0
    answered = printed["paired"]["answered"]
    assert answered == {"n": 4, "a": 4, "b": 0, "a_only": 4, "b_only": 0, "p_value": 0.125}
    assert printed["figures"]["answers_answered_rate"] == {"a": 1.0, "b": 0.0, "diff": -1.0}
    assert printed["paired"]["quote_hit"]["n"] == 4 and printed["paired"]["quote_hit"]["b"] == 0
    assert printed["paired"]["abstained"]["n"] == 1 and printed["paired"]["abstained"]["b"] == 1
    assert "hit_at_5" in printed["paired"]
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [q["id"] for q in written["questions"]["b"]] == [case["id"] for case in DATASET]
    assert all(q["answer"]["band"] == "abstained" for q in written["questions"]["b"])


def test_onboard_eval_compare_refuses_an_env_file_of_other_settings(tmp_path, api_embeddings):
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    good, bad = tmp_path / "a.env", tmp_path / "b.env"
    good.write_text("ONBOARD_RETRIEVAL__K=4\n", encoding="utf-8")
    bad.write_text("RETRIEVAL__K=4\nOPENAI_API_KEY=sk-secret\n", encoding="utf-8")

    result = eval_command(tmp_path, DATASET, corpus, "--compare", str(good), str(bad))

    assert result.exit_code == 2
    assert "not ONBOARD_ settings: RETRIEVAL__K, OPENAI_API_KEY" in result.stderr
    assert "sk-secret" not in result.output


def test_onboard_eval_reports_questions_asked_after_a_conversation(tmp_path, api_embeddings):
    corpus = write_docs(tmp_path / "corpus", CORPUS)
    followup = {"id": "f1", "question": "and who fixes it when it breaks?", "gold_files": ["it/laptop.md"],
                "gold_quote": "Broken hardware goes to the helpdesk",
                "history": [{"role": "user", "content": "when do I get my laptop?"},
                            {"role": "assistant", "content": "IT ships a laptop before your first day. [1]"}]}

    result = eval_command(tmp_path, [*DATASET, followup], corpus, "--answers")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == len(DATASET) + 1
    assert summary["with_history"]["n"] == 1 and summary["with_history"]["n_answerable"] == 1
    assert {"quote_hit_rate", "answers_answered_rate", "answers_recall_at_5"} <= set(summary["with_history"])


def test_retrieval_figures_count_only_the_abstained_band_as_abstaining():
    """An unsure question is answered under a warning (issue #18): it counts as answered, not abstained."""
    from assistant.answerability import Answerability
    from assistant.evaluation import Case, evaluate
    from assistant.retrieval import Retrieval

    verdicts = {"q-sure": ("answered", True), "q-unsure": ("unsure", False), "q-none": ("abstained", False)}

    class Bands:
        def retrieve(self, question, **_):
            band, answerable = verdicts[question]
            return Retrieval(question, [], Answerability(answerable, 0.5, band, band=band), 1)

    cases = [Case("1", "q-sure", ("a.md",), ()), Case("2", "q-unsure", ("a.md",), ()), Case("3", "q-none", (), ())]
    summary, rows = evaluate(Bands(), cases, mode="hybrid", k=5)
    assert [(r["band"], r["abstained"]) for r in rows] == [("answered", False), ("unsure", False), ("abstained", True)]
    assert summary["answered_rate"] == 1.0 and summary["abstain_recall"] == 1.0
