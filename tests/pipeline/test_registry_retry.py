"""A registry read answered 5xx is tried again; a write is not.

The real registry (distribution, filesystem store; tests/engines.py) answered HTTP 500 to a HEAD
of `challenger` while another promotion was writing that tag, so one of two racing promotions
failed with "HTTP 500" instead of naming the winner. That race cannot be triggered on demand, so
this stand-in speaks the registry API's few calls the client makes (GET /v2/, HEAD and PUT of a
manifest) and answers 500 a set number of times first, as the store did.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from pipeline import registry
from pipeline.errors import PipelineError

DIGEST = "sha256:" + "a" * 64


class _Registry(BaseHTTPRequestHandler):
    failures: ClassVar[Counter[str]] = Counter()  # method -> 500s still to answer
    calls: ClassVar[Counter[str]] = Counter()

    def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _manifest(self, ok: dict[str, str] | None = None) -> None:
        self.calls[self.command] += 1
        if self.failures[self.command] > 0:
            self.failures[self.command] -= 1
            self._answer(500)
        else:
            self._answer(201 if self.command == "PUT" else 200, ok)

    def do_GET(self) -> None:
        self._answer(200)  # /v2/: no auth challenge

    def do_HEAD(self) -> None:
        self._manifest({"Docker-Content-Digest": DIGEST})

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._manifest()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture()
def client(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[registry.Client]:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no credentials of this machine's user
    monkeypatch.setattr(registry, "READ_RETRY_SECONDS", (0.01, 0.01))
    _Registry.failures, _Registry.calls = Counter(), Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield registry.connect(registry.parse(f"127.0.0.1:{server.server_port}/team/model"))
    finally:
        server.shutdown()


def test_a_read_answered_500_is_tried_again(client: registry.Client) -> None:
    _Registry.failures["HEAD"] = 2
    assert registry.resolve(client, registry.CHALLENGER) == DIGEST
    assert _Registry.calls["HEAD"] == 3


def test_a_read_that_keeps_failing_names_the_status(client: registry.Client) -> None:
    _Registry.failures["HEAD"] = 10
    with pytest.raises(PipelineError, match="HTTP 500"):
        registry.resolve(client, registry.CHALLENGER)
    assert _Registry.calls["HEAD"] == 3  # bounded: the client fails fast, unlike ORAS's own loop


def test_a_write_answered_500_is_not_repeated(client: registry.Client) -> None:
    _Registry.failures["PUT"] = 1
    with pytest.raises(PipelineError, match="HTTP 500"):
        client.request("PUT", client.manifest_url(registry.CHALLENGER), ok=(200, 201), data=b"{}",
                       headers={"Content-Type": registry.MANIFEST_TYPES[0]})
    assert _Registry.calls["PUT"] == 1
