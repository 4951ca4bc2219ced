#!/usr/bin/env python3
"""Check eval/sample_qa.jsonl against the sample handbook (stdlib only).

For every question it verifies the row's shape and that each gold quote is an
exact substring of its gold file after collapsing whitespace, and that the
quote sits in plain prose (not in front matter, a fenced code block, a table
row, an HTML fragment or a Liquid tag). Exit status 0 when everything passes.

    python eval/check_sample_qa.py [--qa eval/sample_qa.jsonl] [--root onboard/sample_handbook]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KINDS = {"fact", "number", "procedure", "paraphrase", "multi_hop", "unanswerable"}
ID_RE = re.compile(r"^nw-\d{3}$")
FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
MARKUP = ("{%", "%}", "{{", "}}", "<", ">", "|", "`", "](", "**")


def collapse(text: str) -> str:
    return " ".join(text.split())


def front_matter(text: str) -> str:
    match = FRONT_MATTER.match(text)
    return match.group(1) if match else ""


INLINE_MARKUP = re.compile(
    r"\{%.*?%\}|\{\{.*?\}\}|</?[A-Za-z][^<>]*>|!?\[[^\]]*\]\([^)]*\)|`[^`]*`|https?://\S+"
)


def prose_only(text: str) -> str:
    """The file's plain prose: front matter, code fences, table rows and HTML
    blocks are dropped; inline Liquid tags, HTML tags, links, code spans and
    URLs are replaced by a separator that no quote can match across."""
    match = FRONT_MATTER.match(text)
    if match:
        text = text[match.end():]
    text = FENCE.sub("\n", text)
    kept, html_depth = [], 0
    for line in text.splitlines():
        stripped = line.strip()
        opens = len(re.findall(r"<(div|aside|section|details|table)\b", line))
        closes = len(re.findall(r"</(div|aside|section|details|table)>", line))
        in_block = html_depth > 0 or opens > 0 or stripped.startswith("<")
        html_depth = max(0, html_depth + opens - closes)
        if in_block or stripped.startswith(("|", "{%")):
            kept.append("\0")
            continue
        kept.append(INLINE_MARKUP.sub(" \0 ", line))
    return collapse("\n".join(kept))


def check_quote(quote: str, rel: str, root: Path, where: str) -> list[str]:
    errors = []
    path = root / rel
    if not path.is_file():
        return [f"{where}: gold file {rel!r} does not exist under {root}"]
    raw = path.read_text(encoding="utf-8")
    words = len(quote.split())
    if not 5 <= words <= 25:
        errors.append(f"{where}: quote has {words} words (want 5-25): {quote!r}")
    if any(token in quote for token in MARKUP):
        errors.append(f"{where}: quote contains markup: {quote!r}")
    q = collapse(quote)
    if q not in collapse(raw):
        errors.append(f"{where}: quote not found in {rel}: {quote!r}")
    elif q not in prose_only(raw):
        errors.append(f"{where}: quote found in {rel} but not in plain prose: {quote!r}")
    return errors


def check_row(row: dict, root: Path, where: str) -> list[str]:
    errors = []
    for key in ("id", "question", "answer", "kind", "gold_files", "gold_quote"):
        if key not in row:
            errors.append(f"{where}: missing key {key!r}")
    if errors:
        return errors
    if not ID_RE.match(str(row["id"])):
        errors.append(f"{where}: bad id {row['id']!r}")
    kind, files, quote = row["kind"], row["gold_files"], row["gold_quote"]
    if kind not in KINDS:
        errors.append(f"{where}: unknown kind {kind!r}")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return errors + [f"{where}: gold_files must be a list of strings"]
    if not str(row["question"]).strip() or not str(row["answer"]).strip():
        errors.append(f"{where}: empty question or answer")

    if kind == "unanswerable":
        if files or quote:
            errors.append(f"{where}: unanswerable rows need gold_files [] and gold_quote \"\"")
        return errors
    if not files:
        return errors + [f"{where}: answerable row without gold_files"]

    for rel in files:
        path = root / rel
        if path.is_file() and re.search(r"^audience:\s*\[?\s*hr\b", front_matter(path.read_text(encoding="utf-8")), re.MULTILINE):
            errors.append(f"{where}: gold file {rel} is an HR-only page")
    errors += check_quote(quote, files[0], root, where)

    if kind == "multi_hop":
        quotes = row.get("gold_quotes")
        if len(files) < 2:
            errors.append(f"{where}: multi_hop needs at least two gold_files")
        if not isinstance(quotes, dict) or set(quotes) != set(files):
            errors.append(f"{where}: multi_hop needs gold_quotes with one quote per gold file")
        else:
            if quotes[files[0]] != quote:
                errors.append(f"{where}: gold_quote differs from gold_quotes[{files[0]!r}]")
            for rel in files[1:]:
                errors += check_quote(quotes[rel], rel, root, f"{where} [{rel}]")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qa", type=Path, default=HERE / "sample_qa.jsonl")
    parser.add_argument("--root", type=Path, default=HERE.parent / "onboard" / "sample_handbook")
    args = parser.parse_args(argv)

    errors: list[str] = []
    kinds: dict[str, int] = {}
    seen: set[str] = set()
    lines = args.qa.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{args.qa.name}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"{where}: invalid JSON ({exc})")
            continue
        if not isinstance(row, dict):
            errors.append(f"{where}: not a JSON object")
            continue
        where = f"{where} ({row.get('id')})"
        if row.get("id") in seen:
            errors.append(f"{where}: duplicate id")
        seen.add(row.get("id"))
        kinds[row.get("kind")] = kinds.get(row.get("kind"), 0) + 1
        errors += check_row(row, args.root, where)

    for error in errors:
        print("FAIL", error)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(kinds.items(), key=lambda kv: str(kv[0])))
    print(f"{len(seen)} questions ({summary}); {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
