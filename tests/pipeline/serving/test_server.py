"""The server process against hostile and broken clients, signals and dying workers.

Each case must end in a 4xx or a closed connection within a bounded time, with no traceback in
the log, no 5xx counted, and /health answering other clients meanwhile. Real servers on loopback
only; every hostile loop is bounded in bytes and seconds.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.pipeline.serving.catalog import GOOD_ROW
from tests.pipeline.serving.live import Process, served_model

READ_TIMEOUT = 2.0  # MLOPS_READ_TIMEOUT for these servers (default 10 s): keeps the tests short
HEALTH_LIMIT = 1.0  # seconds: /health must answer within this while hostile clients run


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """One worker, so the hostile clients and /health share it."""
    proc = served_model(model_dir, tmp_path_factory.mktemp("server") / "server.log", MLOPS_READ_TIMEOUT=str(READ_TIMEOUT))
    yield proc
    assert proc.stop() == 0


def connect(server: Process) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT + 6)


def read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed (raises on the socket timeout)."""
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data, time.monotonic() - started


def requests_by_status(server: Process) -> Counter[str]:
    text = httpx.get(f"{server.url}/metrics").text
    counts: Counter[str] = Counter()
    for labels, value in re.findall(r"^serving_requests_total\{(.*)\} (\S+)$", text, re.M):
        counts[re.search(r'status="(\d+)"', labels).group(1)] += int(float(value))  # type: ignore[union-attr]
    return counts


def assert_clean(server: Process, before: Counter[str]) -> None:
    """No 5xx counted since `before`, no traceback in the log."""
    after = requests_by_status(server)
    assert not {s: after[s] - before[s] for s in after if s.startswith("5") and after[s] > before[s]}, after
    log = server.text()
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]


class HealthProbe:
    """/health latencies from another client, in a thread, while the block runs."""

    def __init__(self, server: Process) -> None:
        self.url, self.latencies, self.stop = f"{server.url}/health", [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop.is_set() and len(self.latencies) < 2000:
                started = time.monotonic()
                try:
                    ok = client.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.monotonic() - started if ok else float("inf"))
                time.sleep(0.02)

    def __enter__(self) -> HealthProbe:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(15)

    def assert_fast(self) -> None:
        assert len(self.latencies) >= 10
        worst, median = max(self.latencies), statistics.median(self.latencies)
        print(f"/health under attack: {len(self.latencies)} probes, median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
        assert worst < HEALTH_LIMIT and median < 0.1, sorted(self.latencies)[-5:]


def huge_header(server: Process, budget: int = 256 * 1024 * 1024, seconds: float = 30) -> tuple[bytes, int]:
    """Send one header of up to `budget` bytes (stops when the server closes); returns its answer."""
    sock = connect(server)
    sent = 0
    chunk = b"a" * 65536
    deadline = time.monotonic() + seconds
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ")
        while sent < budget and time.monotonic() < deadline:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    try:
        answer, _ = read_until_closed(sock)
    except TimeoutError:
        answer = b""
    sock.close()
    return answer, sent


def test_oversized_headers_get_431_and_the_worker_keeps_answering(server: Process) -> None:
    before = requests_by_status(server)
    with HealthProbe(server) as probe:
        started = time.monotonic()
        answer, sent = huge_header(server)
        elapsed = time.monotonic() - started
        time.sleep(0.5)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert sent < 64 * 1024 * 1024 and elapsed < 5, (sent, elapsed)  # refused early, not after 256 MiB
    probe.assert_fast()
    assert_clean(server, before)


def _silent(sock: socket.socket) -> None:
    pass


def _partial_headers(sock: socket.socket) -> None:
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")


def _partial_body(sock: socket.socket) -> None:
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"rows\"")


def _trickled_headers(sock: socket.socket) -> None:
    """Slowloris: one header byte every 0.2 s, never finished (stops when the server closes)."""
    sock.sendall(b"GET /health HTTP/1.1\r\n")
    for _ in range(int((READ_TIMEOUT + 5) / 0.2)):
        try:
            sock.sendall(b"X")
        except OSError:
            return
        time.sleep(0.2)


SLOW_CLIENTS: dict[str, tuple[Callable[[socket.socket], None], bytes]] = {
    "silent": (_silent, b""),
    "partial headers": (_partial_headers, b"HTTP/1.1 408 "),
    "partial body": (_partial_body, b"HTTP/1.1 408 "),
    "trickled headers": (_trickled_headers, b"HTTP/1.1 408 "),
}


@pytest.mark.parametrize("name", SLOW_CLIENTS)
def test_slow_and_silent_clients_are_closed_within_the_read_timeout(server: Process, name: str) -> None:
    before = requests_by_status(server)
    send, expected = SLOW_CLIENTS[name]
    sock = connect(server)
    started = time.monotonic()
    sender = threading.Thread(target=send, args=(sock,), daemon=True)
    sender.start()
    answer, _ = read_until_closed(sock)  # the socket timeout (READ_TIMEOUT + 6 s) fails the test
    elapsed = time.monotonic() - started
    sender.join(10)
    sock.close()
    assert elapsed < READ_TIMEOUT + 2, f"{name}: closed after {elapsed:.1f} s"
    assert answer.startswith(expected), answer[:200]
    assert_clean(server, before)


def aborted_upload(server: Process) -> None:
    """Announce 100 kB, send 1 kB, then reset the connection (as a killed client does)."""
    sock = connect(server)
    sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                 + b"{\"rows\": [" + b" " * 1000)
    time.sleep(0.2)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_an_aborted_upload_is_a_4xx_without_traceback(server: Process) -> None:
    before = requests_by_status(server)
    aborted_upload(server)
    time.sleep(0.5)
    after = requests_by_status(server)
    assert after["499"] == before["499"] + 1, after  # nginx's "client closed request"
    assert_clean(server, before)
    assert "ClientDisconnect" not in server.text()


def test_unknown_methods_share_one_metrics_label(server: Process) -> None:
    with httpx.Client() as client:
        for method in ("FOO", "PROPFIND", "M-SEARCH", "GET"):
            client.request(method, f"{server.url}/health")
    text = httpx.get(f"{server.url}/metrics").text
    methods = set(re.findall(r'^serving_requests_total\{.*method="([^"]*)"', text, re.M))
    assert "other" in methods and "GET" in methods
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other"}, methods


def test_health_stays_fast_while_hostile_clients_run(server: Process) -> None:
    """All the above at once, plus a crowd of silent connections, for one read timeout and more."""
    before = requests_by_status(server)
    silent = [connect(server) for _ in range(50)]
    slow = [connect(server) for _ in range(10)]
    hostile = [threading.Thread(target=huge_header, args=(server, 64 * 1024 * 1024, 10), daemon=True)]
    hostile += [threading.Thread(target=_trickled_headers, args=(sock,), daemon=True) for sock in slow[:5]]
    hostile += [threading.Thread(target=_partial_body, args=(sock,), daemon=True) for sock in slow[5:]]
    hostile += [threading.Thread(target=aborted_upload, args=(server,), daemon=True) for _ in range(5)]
    with HealthProbe(server) as probe:
        for thread in hostile:
            thread.start()
        for thread in hostile:
            thread.join(READ_TIMEOUT + 10)
        time.sleep(READ_TIMEOUT + 1)  # the silent crowd is closed meanwhile
    probe.assert_fast()
    for sock in silent:
        assert read_until_closed(sock)[0] == b""  # closed by the server, not by the socket timeout
        sock.close()
    for sock in slow:
        read_until_closed(sock)  # closed (408 first) by the server, not by the socket timeout
        sock.close()
    assert_clean(server, before)


async def _burst(url: str, n: int, rows: int, after_start: Callable[[], None]) -> Counter[object]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        async def one() -> object:
            try:
                return (await client.post(f"{url}/predict", json={"rows": [GOOD_ROW] * rows})).status_code
            except httpx.HTTPError as exc:
                return type(exc).__name__

        tasks = [asyncio.create_task(one()) for _ in range(n)]
        await asyncio.sleep(0.05)
        after_start()
        return Counter(await asyncio.gather(*tasks))


def test_mlops_serve_drains_in_flight_requests_on_sigterm(model_dir: Path, tmp_path: Path) -> None:
    """The README's promise for the default `mlops serve` (one worker, no drain period)."""
    proc = Process(["-m", "pipeline.cli", "serve", "--model", str(model_dir), "--port", "{port}"], tmp_path / "serve.log")
    proc.wait_ready()
    answers = asyncio.run(_burst(proc.url, 50, 200, proc.proc.terminate))
    assert proc.stop(60) == 0, proc.text()
    assert answers == Counter({200: 50}), answers
    assert "Traceback" not in proc.text()


def children(pid: int) -> set[int]:
    return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def test_a_dead_worker_is_replaced_and_the_metrics_folder_removed(model_dir: Path, tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = served_model(model_dir, tmp_path / "workers.log", workers=2, TMPDIR=str(temp))
    first = children(proc.proc.pid)
    assert len(first) == 2 and len(list(temp.glob("mlops-metrics-*"))) == 1
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while len(now := children(proc.proc.pid) - {victim}) < 2:
        assert proc.proc.poll() is None, proc.text()
        assert time.monotonic() < deadline, "no worker replaced the dead one in 60 s"
        time.sleep(0.2)
    proc.wait_ready()
    assert all(httpx.get(f"{proc.url}/health").status_code == 200 for _ in range(20))
    assert f"worker {victim} exited (signal SIGKILL): starting a new one" in proc.text()
    assert len(now & first) == 1
    assert proc.stop() == 0, proc.text()
    assert list(temp.glob("mlops-metrics-*")) == []


class RecordingTransport(asyncio.Transport):
    """A stand-in for the socket transport that keeps what was written, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed_after: int | None = None

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed_after = len(self.writes)

    def is_closing(self) -> bool:
        return self.closed_after is not None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "peer" if name == "peername" else default


def test_a_response_written_in_one_turn_leaves_as_one_send_in_order() -> None:
    from pipeline.serving.server import OneSendTransport

    async def scenario() -> RecordingTransport:
        real = RecordingTransport()
        transport = OneSendTransport(real, asyncio.get_running_loop())
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"ok")
        assert real.writes == []  # held until the end of this turn
        await asyncio.sleep(0)
        transport.write(b"second")
        await asyncio.sleep(0)
        transport.write(b"third")
        transport.close()  # what is held goes out before the connection closes
        assert transport.get_extra_info("peername") == "peer"
        return real

    real = asyncio.run(scenario())
    assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", b"second", b"third"]
    assert real.closed_after == 3
