"""A real local HTTP server that speaks the OpenAI chat completions API, with SSE streaming.

Tests script what each request gets (``server.steps``: consumed in order, the
last one repeats): a streamed reply (optionally with a slow first token, a
final usage report and a finish reason), an error status, a hang past the
client's timeout, or a stream that breaks after a few chunks. The server
records every request body and the usage it reported, so a test can assert on
what the client sent and how often.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from helpers_net import serving

MODEL = "fake-gpt-1"


@dataclass
class Step:
    """What one request gets."""

    kind: Literal["stream", "status", "hang", "break"] = "stream"
    text: str = "Each new employee gets a one-time home-office stipend [1]."
    #: For ``status``: the HTTP status and the error's ``code``.
    status: int = 500
    code: str | None = None
    first_token_delay_s: float = 0.0
    finish_reason: str = "stop"
    #: For ``break``: content chunks sent before the connection drops.
    chunks_before_break: int = 2


@dataclass
class ChatServer:
    httpd: ThreadingHTTPServer
    steps: list[Step] = field(default_factory=lambda: [Step()])
    requests: list[dict] = field(default_factory=list)
    #: ``(prompt_tokens, completion_tokens)`` of each usage chunk sent.
    usage_sent: list[tuple[int, int]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def next_step(self, body: dict) -> Step:
        with self.lock:
            self.requests.append(body)
            return self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]


def pieces(text: str) -> list[str]:
    """How the server splits a reply into streamed content deltas: word by word."""
    return re.findall(r"\S+\s*", text)


def _chunk(delta: dict, finish_reason: str | None = None) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def _handler(server: ChatServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
                return
            step = server.next_step(body)
            try:
                if step.kind == "status":
                    self._error(step)
                elif step.kind == "hang":
                    server.stopping.wait(30)
                    self.close_connection = True
                else:
                    self._stream(body, step)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, step: Step) -> None:
            kinds = {429: "rate_limit_error", 400: "invalid_request_error"}
            error = {"message": f"scripted error {step.status}", "type": kinds.get(step.status, "server_error")}
            error["code"] = step.code
            self._json(step.status, {"error": error}, {"Retry-After": "0"} if step.status == 429 else None)

        def _send(self, payload: dict | str) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            data = f"data: {text}\n\n".encode()
            self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream(self, body: dict, step: Step) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._send(_chunk({"role": "assistant", "content": ""}))
            if step.first_token_delay_s:
                time.sleep(step.first_token_delay_s)
            for n, piece in enumerate(pieces(step.text)):
                if step.kind == "break" and n == step.chunks_before_break:
                    # Promise a chunk, send half of it, and drop the connection.
                    self.wfile.write(b"400\r\ndata: {\"id\": \"chatcmpl-te")
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self._send(_chunk({"content": piece}))
            self._send(_chunk({}, step.finish_reason))
            if (body.get("stream_options") or {}).get("include_usage"):
                prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                completion = len(pieces(step.text))
                server.usage_sent.append((prompt, completion))
                usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
                self._send({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": MODEL,
                            "choices": [], "usage": usage})
            self._send("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    return Handler


@contextmanager
def chat_server(*steps: Step) -> Iterator[ChatServer]:
    """A running server on 127.0.0.1 and a free port; ``steps`` script its replies."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    httpd.daemon_threads = True
    server = ChatServer(httpd, steps=list(steps) or [Step()])
    httpd.RequestHandlerClass = _handler(server)
    with serving(httpd, on_stop=server.stopping.set):
        yield server
