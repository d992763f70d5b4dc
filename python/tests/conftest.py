"""Fixtures: a temporary root, an injected clock, the CLI binary, and a
local HTTP origin (http.server in a thread) that counts requests."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

import freshcache

REPO = Path(__file__).resolve().parents[2]

# Fetch tests talk to a local origin many times: lift the 2/s per-host limit.
FAST_FETCH = {"fetch": {"rate_limit": "10000/s", "retries": 0}}

# The longest the origin's /hold waits for each of its events (a hang guard).
HOLD_MAX = 60.0


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("FRESHCACHE_") and k != "FRESHCACHE_BIN":
            monkeypatch.delenv(k)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def clock() -> freshcache.ManualClock:
    return freshcache.ManualClock(1_800_000_000)  # 2027-01-15T08:00:00Z


@pytest.fixture
def cache(root: Path, clock: freshcache.ManualClock) -> freshcache.Cache:
    return freshcache.Cache(root, clock=clock)


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess]:
    """Runs the freshcache CLI (FRESHCACHE_BIN, else target/{debug,release})."""
    candidates = [os.environ.get("FRESHCACHE_BIN")]
    candidates += [str(REPO / "target" / p / "freshcache") for p in ("debug", "release")]
    candidates.append(shutil.which("freshcache"))
    binary = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
    if binary is None:
        pytest.fail("no freshcache binary: run `cargo build` or set FRESHCACHE_BIN")

    def run(*args: str, input: Optional[bytes] = None, env: Optional[Dict[str, str]] = None):
        e = {k: v for k, v in os.environ.items() if not k.startswith("FRESHCACHE_")}
        e.update(env or {})
        return subprocess.run([binary, *args], input=input, capture_output=True, env=e, timeout=60)

    return run


class Origin:
    """A local HTTP origin. Paths: /slow?s=SECONDS, /hold (answers once every
    event in `hold` is set), /etag/<name> (ETag + 304), /feed.xml (RSS),
    /json/<n>, /status/<code>. Counts requests."""

    def __init__(self) -> None:
        self.requests: List[str] = []
        self.lock = threading.Lock()
        self.bodies: Dict[str, bytes] = {}
        self.failing: set = set()  # paths that answer 503 from now on
        # /hold waits for each of these (at most HOLD_MAX seconds each, a
        # guard against a hang), then answers like /slow.
        self.hold: List[threading.Event] = []
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                with origin.lock:
                    origin.requests.append(self.path)
                path, _, query = self.path.partition("?")
                if path in origin.failing:
                    return self.reply(503, b"down")
                if path == "/slow":
                    time.sleep(float(query.split("=")[1]) if query else 1.0)
                    return self.reply(200, b'{"slow":true}')
                if path == "/hold":
                    for event in origin.hold:
                        event.wait(HOLD_MAX)
                    return self.reply(200, b'{"slow":true}')
                if path.startswith("/status/"):
                    return self.reply(int(path.rsplit("/", 1)[1]), b"nope")
                if path.startswith("/etag/"):
                    body = origin.bodies.get(path, b'{"v":1}')
                    tag = '"' + hashlib.sha1(body).hexdigest()[:12] + '"'
                    if self.headers.get("If-None-Match") == tag:
                        return self.reply(304, b"", {"ETag": tag})
                    return self.reply(200, body, {"ETag": tag})
                if path == "/feed.xml":
                    return self.reply(200, origin.bodies.get(path, RSS), {"Content-Type": "application/rss+xml"})
                if path.startswith("/json/"):
                    n = path.rsplit("/", 1)[1]
                    return self.reply(200, ('{"n":%s}' % n).encode())
                self.reply(404, b"not found")

            def reply(self, code: int, body: bytes, headers: Optional[Dict[str, str]] = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if code != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if code != 304:
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(prefix))


RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>wire</title>
<item><guid>a-1</guid><title>First</title><link>http://x/1</link></item>
<item><guid>a-2</guid><title>Second</title><link>http://x/2</link></item>
</channel></rss>"""


@pytest.fixture
def origin() -> Iterator[Origin]:
    o = Origin()
    yield o
    o.server.shutdown()
