"""What the REST API itself adds to a question's time, over the service call it makes.

One process: the chat service as ``onboard api`` builds it
(:func:`onboard.factories.make_chat_service`, extractive answers, the 18F index
of ``benchmarks/api_load.py``'s ``--index-cache`` copied into a temporary
folder; SQLite, or ``--backend postgresql``), served by uvicorn on 127.0.0.1 in a
thread (``api.app.standalone``, as ``onboard api`` serves it), and an httpx
client in the main thread asking one question at a time, so nothing queues.

Each question of the dataset is asked twice, as the same API key's identity,
each time in a new conversation so both do the same work: once through
``POST /api/v1/ask`` and once by calling ``ChatService.ask`` directly (the
order alternates from question to question). Three clocks run during an HTTP
request:

- ``service``: :meth:`ChatService.ask` itself, timed by a thin wrapper the API
  is given as its service;
- ``in_server``: an ASGI middleware around the whole app, from the request's
  arrival at the app to the last byte of its response handed to uvicorn:
  authentication (key lookup, rate-limit count: database round trips), body
  parsing and validation, the hop to the thread pool, building the JSON;
- ``client``: the round trip as httpx sees it (adds HTTP parsing on both sides
  and the loopback).

The API's own overhead is ``in_server - service`` per request (what the API
code costs) and ``client - service`` (all of it, HTTP included), both exact per
request since they come from the same request. ``of_which_key_check`` is the
part spent checking the key (``keys.authenticate`` and ``limits.hit``, two
statements and a commit, timed by wrapping them), in wall time and in the
thread's CPU time (which a busy machine's preemption does not inflate). ``client - direct`` (the same
question by the direct call) is reported too, but two separate answers differ
by the machine's noise, which other engineers' test runs on this 2-core VM
make large; ``load_average`` records it.

    .venv/bin/python benchmarks/api_overhead.py --append benchmarks/results/api-overhead-2026-12-07.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import uvicorn
from sqlmodel import Session

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_load import DEFAULT_CACHE, DEFAULT_CORPUS, DEFAULT_DATASET, free_port, prepare_index
from load import _code_version, _nothing, append_run, postgresql

from api import callers
from api.app import standalone
from api.callers import key_identity
from assistant.evaluation import load_dataset
from feedback import keys
from onboard import factories
from onboard.settings import Settings


class TimedService:
    """The chat service, its :meth:`ask` timed (every other attribute is the service's own)."""

    def __init__(self, service) -> None:
        self._service = service
        self.ask_ms: list[float] = []

    def __getattr__(self, name):
        return getattr(self._service, name)

    def ask(self, *args, **kwargs):
        began = time.perf_counter()
        try:
            return self._service.ask(*args, **kwargs)
        finally:
            self.ask_ms.append((time.perf_counter() - began) * 1000)


class Stopwatch:
    """Wraps ``module.name`` so each call's wall and thread-CPU milliseconds add to the current request's."""

    def __init__(self, *targets) -> None:
        self.wall_ms = self.cpu_ms = 0.0
        for module, name in targets:
            setattr(module, name, self._timed(getattr(module, name)))

    def _timed(self, function):
        def timed_call(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall_ms += (time.perf_counter() - wall) * 1000
                self.cpu_ms += (time.thread_time() - cpu) * 1000

        return timed_call

    def take(self) -> tuple[float, float]:
        taken, self.wall_ms, self.cpu_ms = (self.wall_ms, self.cpu_ms), 0.0, 0.0
        return taken


def timed(app, sink: list[float]):
    """``app`` with each HTTP request's time, from its arrival to its last response byte, appended to ``sink``."""

    async def timed_app(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        began = time.perf_counter()

        async def sending(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                sink.append((time.perf_counter() - began) * 1000)

        await app(scope, receive, sending)

    return timed_app


def serve(app, port: int) -> uvicorn.Server:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("uvicorn did not start")
        time.sleep(0.02)
    return server


def stats(values: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p95_ms": round(float(np.percentile(values, 95)), 2),
            "max_ms": round(max(values), 2), "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--index-cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: a throwaway cluster on --pg-port (as benchmarks/load.py starts one)")
    parser.add_argument("--pg-port", type=int, default=55445)
    parser.add_argument("--rounds", type=int, default=1, help="times the whole dataset is asked (each way)")
    parser.add_argument("--warmup", type=int, help="questions asked through the API first, not counted (default: "
                        "every question once, so both ways find the passages' sentence embeddings cached)")
    parser.add_argument("--append", type=Path)
    args = parser.parse_args()
    indexed = prepare_index(args.index_cache.resolve(), args.corpus)
    questions = [case.question for case in load_dataset(args.dataset)]
    args.warmup = len(questions) if args.warmup is None else args.warmup

    with (tempfile.TemporaryDirectory(prefix="onboard-api-overhead-") as tmp,
          postgresql(args.pg_port) if args.backend == "postgresql" else _nothing() as cluster):
        data = Path(tmp)
        shutil.copytree(args.index_cache / "chroma", data / "chroma")
        shutil.copytree(args.index_cache / "models", data / "models")
        if not cluster:
            shutil.copy(args.index_cache / "onboard.db", data / "onboard.db")
        settings = Settings(_env_file=None, data_dir=data, database_url=cluster.url if cluster else None,
                            answer={"mode": "extractive"}, support={"enabled": False})
        engine = factories.make_engine(settings, migrate=True)
        service = TimedService(factories.make_chat_service(settings, engine=engine))
        with Session(engine) as session:
            key, secret = keys.create_key(session, name="overhead", team="bench",
                                          rate_per_minute=keys.MAX_RATE_PER_MINUTE)
        who = key_identity(key)
        # What the key check costs in each request (api/callers.py: the key looked up, the request counted).
        gate = Stopwatch((callers.keys, "authenticate"), (callers.limits, "hit"))
        in_server: list[float] = []
        server = serve(timed(standalone(settings, service=lambda: service), in_server), free_port())
        url = f"http://127.0.0.1:{server.config.port}/api/v1"
        client_ms, direct_ms, service_ms, server_ms, gate_ms, gate_cpu_ms = [], [], [], [], [], []
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60) as http:

            def over_http(question: str) -> None:
                service.ask_ms.clear()
                in_server.clear()
                gate.take()
                began = time.perf_counter()
                http.post("/ask", json={"question": question}).raise_for_status()
                client_ms.append((time.perf_counter() - began) * 1000)
                service_ms.append(service.ask_ms[-1])
                server_ms.append(in_server[-1])
                wall, cpu = gate.take()
                gate_ms.append(wall)
                gate_cpu_ms.append(cpu)

            def direct(question: str) -> None:
                began = time.perf_counter()
                asked = service._service.ask(who, question, channel="api")
                direct_ms.append((time.perf_counter() - began) * 1000)
                assert asked.outcome.message is not None

            for question in questions[: args.warmup]:
                over_http(question)
            for kept in (client_ms, direct_ms, service_ms, server_ms, gate_ms, gate_cpu_ms):
                kept.clear()
            load_before = os.getloadavg()
            for n, question in enumerate(questions * args.rounds):
                first, second = (over_http, direct) if n % 2 == 0 else (direct, over_http)
                first(question)
                second(question)
            load_after = os.getloadavg()
        server.should_exit = True
        engine.dispose()

    api_in_server = [s - c for s, c in zip(server_ms, service_ms, strict=True)]
    api_all = [t - c for t, c in zip(client_ms, service_ms, strict=True)]
    paired = [t - d for t, d in zip(client_ms, direct_ms, strict=True)]
    result = {
        "run": datetime.now(UTC).strftime("%Y%m%dT%H%M%S"),
        "date": datetime.now(UTC).date().isoformat(),
        "what": "the REST API's own time over ChatService.ask, one request at a time (uvicorn in-process)",
        "database": args.backend,
        "index": f"{args.index_cache} ({indexed})",
        "dataset": str(args.dataset),
        "questions": len(client_ms),
        "cpu_count": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "code": _code_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "direct_service_call": stats(direct_ms),
        "http_client_round_trip": stats(client_ms),
        "service_call_inside_http": stats(service_ms),
        "http_request_in_server": stats(server_ms),
        "api_overhead_in_server": stats(api_in_server),
        "api_overhead_with_http": stats(api_all),
        "of_which_key_check": stats(gate_ms),
        "of_which_key_check_thread_cpu": stats(gate_cpu_ms),
        "api_overhead_in_server_without_key_check": stats([o - g for o, g in zip(api_in_server, gate_ms, strict=True)]),
        "client_minus_direct_paired": stats(paired),
    }
    print(json.dumps(result, indent=1))
    if args.append:
        append_run(args.append, result)


if __name__ == "__main__":
    main()
