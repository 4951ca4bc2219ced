"""Local servers for tests: a free port, and an HTTP server running in a thread."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(httpd: ThreadingHTTPServer, on_stop=None) -> Iterator[ThreadingHTTPServer]:
    """Run ``httpd`` in a daemon thread until the block ends."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        if on_stop is not None:
            on_stop()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
