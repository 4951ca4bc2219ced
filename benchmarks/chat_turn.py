"""Benchmark one chat turn as the page runs it: store the question, answer, store the answer.

Prints one JSON object. With a local stub OpenAI-compatible endpoint that
waits ``--delay`` seconds before its first token, the app's own time per turn
(retrieval, prompt assembly, database writes: everything but the endpoint's
wait) and the time to first token above the endpoint's own are reported; the
extractive mode's whole turn too.

    python benchmarks/chat_turn.py --corpus ../shared/corpora/18f-handbook \\
        --dataset ../shared/eval/18f_dev_qa.jsonl --delay 0.2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sqlmodel import Session

from assistant.evaluation import load_dataset
from assistant.ingest import ingest
from feedback import store
from onboard import factories
from onboard.settings import Settings
from service.turns import answer_turn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers_openai_server import Step, chat_server


def percentiles(values: list[float]) -> dict:
    array = np.array(values)
    return {"p50": round(float(np.percentile(array, 50)), 1), "p95": round(float(np.percentile(array, 95)), 1)}


def run_turns(settings: Settings, engine, questions: list[str]) -> tuple[list[float], list[float | None]]:
    assistant = factories.make_assistant(settings, factories.bootstrap_knowledge_base(settings))  # as the app does
    with Session(engine, expire_on_commit=False) as session:
        user = store.get_or_create_user(session=session, subject="bench", name="Benchmark")
    totals, firsts = [], []
    for question in questions:
        first: list[float] = []

        def write(deltas, first=first):
            for _ in deltas:
                if not first:
                    first.append(time.perf_counter())

        start = time.perf_counter()
        with Session(engine, expire_on_commit=False) as session:
            conversation = store.create_conversation(session=session, user=user)
            message = store.add_user_message(
                session=session, user=user, conversation_id=conversation.id, content=question
            )
        outcome = answer_turn(engine=engine, assistant=lambda: assistant, question=message, history=[], write=write)
        totals.append((time.perf_counter() - start) * 1000)
        firsts.append((first[0] - start) * 1000 if first else None)
        if outcome.status not in ("complete", "abstained"):
            print(f"turn ended {outcome.status}: {outcome.error}", file=sys.stderr)
    return totals, firsts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.2, help="the stub endpoint's wait before its first token (s)")
    parser.add_argument("--questions", type=int, default=60)
    args = parser.parse_args()
    questions = [case.question for case in load_dataset(args.dataset)][: args.questions]

    with tempfile.TemporaryDirectory(prefix="onboard-turn-") as tmp:
        base = Settings(data_dir=Path(tmp), collection="bench")
        embeddings = factories.make_embeddings(base)
        engine = factories.make_engine(base)
        ingest([args.corpus], store=factories.make_store(base, embeddings), embeddings=embeddings, engine=engine)

        extractive_totals, _ = run_turns(base, engine, questions)
        with chat_server(Step(first_token_delay_s=args.delay)) as server:
            llm = Settings(
                data_dir=Path(tmp), collection="bench",
                answer={"mode": "llm", "base_url": server.base_url, "api_key": "bench", "model": "stub"},
            )
            llm_totals, llm_firsts = run_turns(llm, engine, questions)
            endpoint_calls = len(server.requests)
    delay_ms = args.delay * 1000
    answered = [(t, f) for t, f in zip(llm_totals, llm_firsts, strict=True) if f is not None and t >= delay_ms]
    result = {
        "questions": len(questions),
        "extractive_turn_ms": percentiles(extractive_totals),
        "llm": {
            "endpoint_first_token_delay_ms": delay_ms,
            "endpoint_calls": endpoint_calls,
            "turns_that_called_the_endpoint": len(answered),
            "app_overhead_ms": percentiles([t - delay_ms for t, _ in answered]),
            "ttft_above_endpoint_ms": percentiles([f - delay_ms for _, f in answered]),
            "abstained_turn_ms": percentiles([t for t, f in zip(llm_totals, llm_firsts, strict=True) if t < delay_ms] or [0]),
        },
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
