"""A real local HTTP server that speaks the OpenAI ``/v1/embeddings`` protocol, for CLI tests.

It embeds with the same deterministic hashing as ``conftest.FakeEmbeddings`` and
records every request body, so a test can assert on what the CLI sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from conftest import FakeEmbeddings
from helpers_net import serving


class EmbeddingServer:
    def __init__(self, httpd: ThreadingHTTPServer) -> None:
        self.httpd = httpd
        self.requests: list[dict] = []

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def inputs(self) -> list[str]:
        """Every text sent for embedding, in order."""
        texts: list[str] = []
        for body in self.requests:
            value = body["input"]
            texts.extend([value] if isinstance(value, str) else value)
        return texts


def _handler(server: EmbeddingServer):
    fake = FakeEmbeddings()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

        def do_POST(self) -> None:
            if not self.path.rstrip("/").endswith("/embeddings"):
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append(body)
            texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
            data = []
            for index, text in enumerate(texts):
                vector = fake._vector(text)
                if body.get("encoding_format") == "base64":
                    vector = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
                data.append({"object": "embedding", "index": index, "embedding": vector})
            payload = json.dumps(
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model", ""),
                    "usage": {"prompt_tokens": 0, "total_tokens": 0},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextmanager
def embedding_server() -> Iterator[EmbeddingServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server = EmbeddingServer(httpd)
    httpd.RequestHandlerClass = _handler(server)
    with serving(httpd):
        yield server
