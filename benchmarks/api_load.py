"""The REST API under load, as a deployment runs it: one ``onboard serve`` process, many clients at once.

The 18F handbook is indexed once into ``--index-cache`` by ``onboard ingest``
itself (run again each time: unchanged files are skipped, so it only checks);
each backend then gets a fresh data folder holding a copy of that index, and
one ``onboard serve --port P`` is started there as a real subprocess
(extractive answers, the Help panel off: the API never uses it). On
``postgresql`` a throwaway cluster is started on ``--pg-port``
(:func:`load.postgresql`, as ``benchmarks/load.py`` starts one) and migrated
with ``onboard db upgrade``, as a deployment's one-shot migration does.

Against that one server, for each ``--clients`` level in turn, every client
(an ``httpx.AsyncClient`` of its own, one asyncio loop in this process) holds
its own API key (created in the database with a limit of
``--rate-per-minute``, so the limit never refuses a request) and sends
``--questions`` questions of the dataset one after the other through ``POST
/api/v1/ask``, in one conversation (each question after the first carries the
``conversation_id`` the first answer returned, as a chat integration does: the
service then reads the conversation, and the assistant treats the question as
a possible follow-up, which can cost a second search), or with
``--conversation each`` every question on its own.
Reported per level: requests per second (requests over the wall time from
the common start to the last answer), p50/p95/max latency as the client saw
it, errors (anything but a 200 with an answer), and what the database holds
afterwards for the level's keys, read with SQL: exactly one question and one
answer per request, every answer replying to its question in its
conversation, every message on channel ``api``, every ``message_id``
returned stored. The server's CPU time per request (``/proc``: the serve
process and its threads) is the figure other work on the machine disturbs
least; the load average before and after each level is recorded because
other engineers run test suites on this 2-core VM at the same time.

Before the levels, the server is warmed under a key of its own (its first
request opens the chat service: the knowledge base, the embedding model) with
``--warmup`` questions asked one at a time, by default every question of the
dataset once: an extractive answer embeds the sentences of the passages it
retrieved, and a server that has run a while has most of them cached (as
``benchmarks/load.py``'s sequential reference leaves them before it
measures); ``--warmup 5`` measures a cold server instead. Those rows are not
counted.

    .venv/bin/python benchmarks/api_load.py --append benchmarks/results/api-load-2026-12-07.json
    .venv/bin/python benchmarks/api_load.py --backend sqlite --clients 10

Prints one JSON object per backend; ``--append FILE`` adds each to the
``runs`` of a results file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from sqlmodel import Session, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import _code_version, _nothing, append_run, postgresql  # the same throwaway cluster as the load benchmark

from assistant.evaluation import load_dataset
from feedback import keys
from feedback.models import Message, User
from onboard import factories
from onboard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = ROOT.parent / "shared" / "corpora" / "18f-handbook"
DEFAULT_DATASET = ROOT.parent / "shared" / "eval" / "18f_dev_qa.jsonl"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "onboard-api-load-index"
ONBOARD = [sys.executable, "-m", "onboard.cli"]
START_S = 300
EXAMPLES = 5


def environment(data: Path, database_url: str | None) -> dict[str, str]:
    """What the serve process (and the CLI commands before it) get: the data folder, extractive, no Help panel."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONBOARD_")}
    env |= {"ONBOARD_DATA_DIR": str(data), "ONBOARD_ANSWER__MODE": "extractive", "ONBOARD_SUPPORT__ENABLED": "false",
            # The project's own folder first: an editable install made before a package was added misses it.
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if database_url:
        env["ONBOARD_DATABASE_URL"] = database_url
    return env


def prepare_index(cache: Path, corpus: Path) -> str:
    """``onboard ingest CORPUS`` in ``cache`` (the first time builds the index; later runs only check it)."""
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*ONBOARD, "ingest", str(corpus)], env=environment(cache, None), cwd=cache,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"onboard ingest failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``onboard serve --port P`` in a data folder, until :meth:`stop`."""

    def __init__(self, data: Path, env: dict[str, str], log: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/api/v1"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen([*ONBOARD, "serve", "--port", str(port)], env=env, cwd=data,
                                            stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> float:
        """Seconds until ``/ready`` says 200 (its first call opens the chat service)."""
        began = time.monotonic()
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"onboard serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=120).status_code == 200:
                    return time.monotonic() - began
            except httpx.HTTPError:
                pass
            if time.monotonic() - began > START_S:
                raise SystemExit(f"onboard serve was not ready after {START_S} s:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def make_keys(engine, n: int, *, name: str, rate_per_minute: int) -> list[tuple[int, str]]:
    """``n`` keys (id, secret), each its own caller with its own user row."""
    made = []
    with Session(engine) as session:
        for i in range(n):
            key, secret = keys.create_key(session, name=f"{name} {i}", team="load", rate_per_minute=rate_per_minute)
            made.append((key.id, secret))
    return made


async def client(url: str, secret: str, questions: list[str], start: asyncio.Event, follow: bool) -> dict:
    """One client: its questions one after the other (in one conversation if ``follow``); latency and outcome."""
    done = {"ms": [], "errors": [], "message_ids": [], "question_ids": []}
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as http:
        await start.wait()
        conversation_id = None
        for question in questions:
            body = {"question": question} | ({"conversation_id": conversation_id} if conversation_id else {})
            began = time.perf_counter()
            try:
                response = await http.post("/ask", json=body)
                elapsed = (time.perf_counter() - began) * 1000
                if response.status_code != 200:
                    done["errors"].append(f"{response.status_code}: {response.text[:200]}")
                    continue
                answer = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                done["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            done["ms"].append(elapsed)
            done["message_ids"].append(answer["message_id"])
            done["question_ids"].append(answer["question_id"])
            conversation_id = answer["conversation_id"] if follow else None
    return done


async def level(url: str, secrets: list[str], sent: list[list[str]], follow: bool) -> tuple[list[dict], float]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(client(url, secret, questions, start, follow))
             for secret, questions in zip(secrets, sent, strict=True)]
    await asyncio.sleep(0.2)  # every client has its connection pool before the common start
    began = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - began


def audit(engine, key_ids: list[int], results: list[dict], sent: list[list[str]]) -> dict:
    """What the database holds for these keys: one question and one answer per request, all on channel api."""
    subjects = {f"apikey:{key_id}": n for n, key_id in enumerate(key_ids)}
    with Session(engine) as session:
        users = {u.id: subjects[u.subject] for u in session.exec(select(User).where(User.subject.in_(list(subjects))))}
        messages = list(session.exec(select(Message).where(Message.user_id.in_(list(users))).order_by(Message.id)))
    questions = {m.id: m for m in messages if m.role == "user"}
    answers = [m for m in messages if m.role == "assistant"]
    per_client_q = Counter(users[m.user_id] for m in questions.values())
    per_client_a = Counter(users[m.user_id] for m in answers)
    answers_per_question = Counter(a.reply_to for a in answers)
    misplaced = sum(1 for a in answers if a.reply_to not in questions
                    or questions[a.reply_to].conversation_id != a.conversation_id)
    returned = {mid for r in results for mid in r["message_ids"]}
    stored = {a.id for a in answers}
    wrong_count = [n for n in range(len(key_ids)) if per_client_q[n] != len(sent[n]) or per_client_a[n] != len(sent[n])]
    return {
        "questions_stored": len(questions),
        "answers_stored": len(answers),
        "answers_by_status": dict(Counter(a.status for a in answers)),
        "channels": dict(Counter(m.channel for m in messages)),
        "questions_without_one_answer": sum(1 for q in questions if answers_per_question[q] != 1),
        "answers_misplaced": misplaced,
        "returned_not_stored": len(returned - stored),
        "clients_with_wrong_counts": len(wrong_count),
        "conversations": len({m.conversation_id for m in messages}),
        "rows_ok": (not wrong_count and not misplaced and returned <= stored
                    and all(answers_per_question[q] == 1 for q in questions)
                    and all(m.channel == "api" for m in messages)),
    }


def run_level(server: Server, engine, clients: int, per_client: int, questions: list[str], rate: int,
              cluster, follow: bool) -> dict:
    made = make_keys(engine, clients, name=f"load x{clients}", rate_per_minute=rate)
    sent = [[questions[(i * per_client + t) % len(questions)] for t in range(per_client)] for i in range(clients)]
    load_before = os.getloadavg()
    cpu_before = process_cpu_s(server.process.pid)
    db_before = cluster.cpu_s() if cluster else {}
    results, wall = asyncio.run(level(server.url, [secret for _, secret in made], sent, follow))
    server_cpu = process_cpu_s(server.process.pid) - cpu_before
    db_cpu = sum(s - db_before.get(p, 0.0) for p, s in cluster.cpu_s().items()) if cluster else None
    load_after = os.getloadavg()
    ms = [m for r in results for m in r["ms"]]
    errors = [e for r in results for e in r["errors"]]
    requests = clients * per_client
    return {
        "clients": clients,
        "questions_per_client": per_client,
        "requests": requests,
        "answered": len(ms),
        "errors": len(errors),
        "error_examples": errors[:EXAMPLES],
        "wall_s": round(wall, 2),
        "requests_per_s": round(requests / wall, 1),
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "max_ms": round(max(ms), 1) if ms else None,
        "server_cpu_ms_per_request": round(server_cpu * 1000 / requests, 1),
        "database_server_cpu_ms_per_request": round(db_cpu * 1000 / requests, 1) if db_cpu is not None else None,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        **audit(engine, [key_id for key_id, _ in made], results, sent),
    }


def run_backend(backend: str, args, questions: list[str], indexed: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="onboard-api-load-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        shutil.copytree(args.index_cache / "chroma", data / "chroma")
        shutil.copytree(args.index_cache / "models", data / "models")
        with postgresql(args.pg_port) if backend == "postgresql" else _nothing() as cluster:
            database_url = cluster.url if cluster else None
            if cluster is None:  # the SQLite file holds the manifest of the index copied with it
                shutil.copy(args.index_cache / "onboard.db", data / "onboard.db")
            env = environment(data, database_url)
            settings = Settings(_env_file=None, data_dir=data, database_url=database_url)
            if cluster:
                migrated = subprocess.run([*ONBOARD, "db", "upgrade"], env=env, cwd=data, capture_output=True,
                                          text=True, check=False)
                if migrated.returncode != 0:
                    raise SystemExit(f"onboard db upgrade failed: {migrated.stdout}{migrated.stderr}")
            engine = factories.make_engine(settings)
            server = Server(data, env, work / "serve.log", args.port or free_port())
            print(f"{backend}: onboard serve pid {server.process.pid} at {server.url}", file=sys.stderr, flush=True)
            try:
                ready_s = server.wait_ready()
                warm = make_keys(engine, 1, name="warm-up", rate_per_minute=args.rate_per_minute)[0][1]
                began = time.perf_counter()
                with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {warm}"}, timeout=120) as h:
                    for question in questions[:args.warmup]:
                        h.post("/ask", json={"question": question}).raise_for_status()
                warm_s = time.perf_counter() - began
                print(f"{backend}: warmed with {args.warmup} questions in {warm_s:.1f} s", file=sys.stderr, flush=True)
                follow = args.conversation == "one"
                levels = [run_level(server, engine, n, args.questions, questions, args.rate_per_minute, cluster,
                                    follow) for n in args.clients]
            except BaseException:
                print(server.tail(), file=sys.stderr)
                raise
            finally:
                server.stop()
                engine.dispose()
    return {
        "run": datetime.now(UTC).strftime("%Y%m%dT%H%M%S"),
        "date": datetime.now(UTC).date().isoformat(),
        "what": "POST /api/v1/ask against one `onboard serve` subprocess (pages + API on one port), extractive",
        "backend": backend,
        "corpus": str(args.corpus),
        "dataset": str(args.dataset),
        "index": f"{args.index_cache} ({indexed})",
        "cpu_count": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "code": _code_version(),
        "ready_s": round(ready_s, 1),
        "warmup_questions": args.warmup,
        "warmup_s": round(warm_s, 1),
        "rate_per_minute_per_key": args.rate_per_minute,
        "conversation": args.conversation,
        "levels": levels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 10, 50],
                        help="comma-separated concurrency levels (default 1,10,50)")
    parser.add_argument("--questions", type=int, default=20, help="questions per client, one after the other")
    parser.add_argument("--conversation", choices=("one", "each"), default="one",
                        help="one: each client's questions in one conversation (a chat integration; each later "
                             "question is answered as a possible follow-up); each: every question on its own")
    parser.add_argument("--warmup", type=int, help="questions asked one at a time before the levels, not counted "
                        "(default: every question of the dataset once, as a server that has run a while)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET, help="JSONL questions, cycled")
    parser.add_argument("--index-cache", type=Path, default=DEFAULT_CACHE,
                        help="data folder the corpus is indexed into once (onboard ingest), copied for each backend")
    parser.add_argument("--pg-port", type=int, default=55445, help="port of the throwaway PostgreSQL")
    parser.add_argument("--port", type=int, help="port of onboard serve (default: a free one)")
    parser.add_argument("--rate-per-minute", type=int, default=keys.MAX_RATE_PER_MINUTE,
                        help="each key's limit: high, so the limit never refuses a request of the benchmark")
    parser.add_argument("--append", type=Path, help="also add each backend's result to the 'runs' of this JSON file")
    args = parser.parse_args()
    questions = [case.question for case in load_dataset(args.dataset)]
    args.warmup = len(questions) if args.warmup is None else args.warmup
    if args.questions < 1 or any(n < 1 for n in args.clients) or args.warmup < 0:
        parser.error("--questions and --clients must be at least 1, --warmup at least 0")
    args.index_cache = args.index_cache.resolve()
    indexed = prepare_index(args.index_cache, args.corpus)
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        result = run_backend(backend, args, questions, indexed)
        print(json.dumps(result, indent=1), flush=True)
        if args.append:
            append_run(args.append, result)


if __name__ == "__main__":
    main()
