"""deploy/: the proxy configuration works as nginx runs it, and the compose file is what the docs say.

The proxy test runs Debian's nginx with ``deploy/nginx.conf`` itself (its two
upstream addresses and its listen port replaced by ``benchmarks/topology.py``'s
function, as that script does) in front of two small HTTP servers that answer
with their own name. The whole topology with the real app is driven by
``benchmarks/topology.py``; this is the cheap check that runs with the suite.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import re
import subprocess
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from helpers_net import free_port, running, serving

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX = Path("/usr/sbin/nginx")


def _topology():
    spec = importlib.util.spec_from_file_location("topology", ROOT / "benchmarks" / "topology.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))


# --- the compose file ----------------------------------------------------------------------------------------------


def test_every_image_is_pinned_to_an_exact_version():
    for name, service in _compose()["services"].items():
        image = service["image"]
        # PostgreSQL's exact versions have two parts (15.18); the others' three (1.28.0): "1.28" would move.
        version = r"\d+\.\d+" if image.startswith("postgres:") else r"\d+\.\d+\.\d+"
        assert re.fullmatch(rf"[\w./-]+:{version}(-[\w.]+)?", image), f"{name}: {image} is not an exact version tag"


def test_the_app_processes_share_postgresql_and_the_chroma_server_after_the_one_shot_migration():
    services = _compose()["services"]
    assert services["migrate"]["command"] == ["onboard", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    apps = [services["app-1"], services["app-2"]]
    for app in [*apps, services["migrate"]]:
        assert app["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert app["environment"]["ONBOARD_DATABASE_URL"].startswith("postgresql+psycopg://onboard:")
        assert app["environment"]["ONBOARD_DATABASE_URL"].endswith("@postgres:5432/onboard")
        assert app["environment"]["ONBOARD_CHROMA_URL"] == "http://chroma:8000"
        assert app["secrets"] == [{"source": "streamlit_secrets", "target": "/app/.streamlit/secrets.toml"}]
    assert services["app-1"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["app-2"]["depends_on"]["app-1"] == {"condition": "service_healthy"}
    for app in apps:
        assert "/_stcore/health" in " ".join(app["healthcheck"]["test"])
    assert services["proxy"]["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert set(services["proxy"]["depends_on"]) == {"app-1", "app-2"}


def test_the_proxy_configuration_names_the_compose_app_services():
    upstreams = re.findall(r"^\s*server (\S+) ", (DEPLOY / "nginx.conf").read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert upstreams == ["app-1:8501", "app-2:8501"]
    assert {"app-1", "app-2"} <= set(_compose()["services"])


# --- the proxy, run ------------------------------------------------------------------------------------------------

needs_nginx = pytest.mark.skipif(
    not NGINX.exists() or os.geteuid() != 0,
    reason="needs Debian's nginx (apt-get install nginx), run as root (its temporary folders are root's)",
)


class _Named(BaseHTTPRequestHandler):
    """Answers every request with the server's name; keeps the headers of the last request it got."""

    def do_GET(self):
        self.server.last_headers = dict(self.headers)
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _backend(name: str) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Named)
    httpd.name, httpd.last_headers = name, {}
    return httpd


def _get(port: int, cookie: str | None = None, headers: dict | None = None) -> tuple[str, str | None]:
    """GET / through the proxy: the backend's name, and the routing cookie set (``name=value``), if any."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={**({"Cookie": cookie} if cookie else {}), **(headers or {})})
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        set_cookie = response.getheader("Set-Cookie")
        return body, set_cookie.split(";")[0] if set_cookie else None
    finally:
        connection.close()


@pytest.fixture
def proxy(tmp_path):
    """nginx with deploy/nginx.conf in front of two named backends; yields (port, {name: backend})."""
    backends = {"one": _backend("one"), "two": _backend("two")}
    port = free_port()
    addresses = [f"127.0.0.1:{httpd.server_address[1]}" for httpd in backends.values()]
    conf = tmp_path / "nginx.conf"
    conf.write_text(_topology().render_nginx_conf(addresses, f"127.0.0.1:{port}"), encoding="utf-8")
    command = [str(NGINX), "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log"),
               "-g", f"daemon off; pid {tmp_path / 'nginx.pid'};"]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    with serving(backends["one"]), serving(backends["two"]), running(
        command, health_url=f"http://127.0.0.1:{port}/nginx-health", log_path=tmp_path / "nginx.log", name="nginx",
        timeout_s=20,
    ):
        yield port, backends


@pytest.mark.server
@needs_nginx
def test_a_browser_stays_on_one_process_from_its_first_request(proxy):
    port, _ = proxy
    seen = set()
    for _ in range(16):  # 16 browsers: each one's first request and the ones after it reach the same process
        first, cookie = _get(port)
        assert cookie and cookie.startswith("onboard_route=")
        later = {_get(port, cookie)[0] for _ in range(4)}
        assert later == {first}
        assert _get(port, cookie)[1] is None  # set once, not on every response
        seen.add(first)
    assert seen == {"one", "two"}  # and browsers are spread over the processes


@pytest.mark.server
@needs_nginx
def test_websocket_upgrade_and_host_reach_the_app(proxy):
    port, backends = proxy
    name, _ = _get(port, headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    headers = {key.lower(): value for key, value in backends[name].last_headers.items()}
    assert headers["upgrade"] == "websocket"
    assert headers["connection"] == "upgrade"
    assert headers["host"] == f"127.0.0.1:{port}"  # with the port: Streamlit compares it with the Origin


@pytest.mark.server
@needs_nginx
def test_a_browser_whose_process_is_down_is_served_by_the_other(proxy):
    port, backends = proxy
    name, cookie = _get(port)
    backends[name].shutdown()
    backends[name].server_close()
    survivor = ({"one", "two"} - {name}).pop()
    assert {_get(port, cookie)[0] for _ in range(3)} == {survivor}
