"""Run the app under uvicorn with N pre-forked workers, TCP_NODELAY, client limits and a graceful drain.

Why our own pre-fork instead of `uvicorn --workers`: the model is loaded once in the parent and
shared copy-on-write, and a worker that dies is replaced. Why our own protocol: each accepted
socket gets TCP_NODELAY (without it, keep-alive responses can wait ~40 ms for Nagle + delayed
ACK) and a response goes out in one send (head and body joined), headers are capped (431:
httptools grows a long header by concatenation, so a 256 MiB one held a worker for minutes)
and a request must arrive whole within MLOPS_READ_TIMEOUT (408 and close: silent or trickling
clients cannot hold connections). SIGTERM first flips /ready to 503, keeps serving for
MLOPS_DRAIN_SECONDS (so load balancers stop sending), then accepts what is already queued,
finishes in-flight requests, closes idle connections and exits 0.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# When draining: an idle connection may still send the request it had under way; closed after this.
IDLE_GRACE_SECONDS = 1.0
# The supervisor gives up (exit 1) when more workers than this die within RESTART_WINDOW seconds.
MAX_RESTARTS, RESTART_WINDOW = 10, 60.0


class OneSendTransport:
    """A transport whose writes within one event-loop turn go out as one send.

    Why: uvicorn writes a response's head and body separately; with TCP_NODELAY that is two
    packets, two system calls and two wake-ups of the client (the first finds half a response).
    Joined, a small response is one of each. Writes leave at the end of the turn they were made
    in, and close() sends what is held first, so the order on the wire never changes."""

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self.loop = transport, loop
        self.held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.held:
            self.loop.call_soon(self.send)
        self.held.append(data)

    def send(self) -> None:
        if self.held:
            data = self.held[0] if len(self.held) == 1 else b"".join(self.held)
            self.held.clear()
            if not self.transport.is_closing():
                self.transport.write(data)

    def close(self) -> None:
        self.send()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:  # everything else is the real transport's
        return getattr(self.transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with TCP_NODELAY, a header-size cap, a read deadline and a drain."""

    nodelay = True
    max_header_bytes = 64 * 1024
    read_timeout = 10.0

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if self.nodelay and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(cast(asyncio.Transport, OneSendTransport(transport, self.loop)))  # duck-typed
        self.reading = False  # a request has begun and has not arrived whole
        self.in_headers = False
        self.header_bytes = 0
        self.draining = False
        self.read_timer: asyncio.TimerHandle | None = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def data_received(self, data: bytes) -> None:
        began_before = self.in_headers
        super().data_received(data)
        if not self.in_headers or self.transport.is_closing():
            return
        if began_before:
            self.header_bytes += len(data)
        else:  # the request began inside this chunk: count what follows the last header block
            end = data.rfind(b"\r\n\r\n")
            self.header_bytes += len(data) - (end + 4 if end >= 0 else 0)
        if self.header_bytes > self.max_header_bytes:
            self._refuse(431, f"request line and headers over {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.reading, self.in_headers, self.header_bytes = True, True, 0
        if self.read_timer is None:
            self.read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def on_headers_complete(self) -> None:
        self.in_headers = False
        super().on_headers_complete()
        if self.draining and self.cycle is not None:
            self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading = False
        self._cancel_read_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """Drain: a request under way finishes (then the connection closes); an idle connection
        gets IDLE_GRACE_SECONDS for a request it may already have sent, then closes."""
        self.draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
        elif not self.reading:
            self._unset_keepalive_if_required()
            self.loop.call_later(IDLE_GRACE_SECONDS, self._close_if_idle)

    def _close_if_idle(self) -> None:
        if not self.reading and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()

    def _read_timed_out(self) -> None:
        self.read_timer = None
        if self.reading:
            self._refuse(408, f"request not received whole within {self.read_timeout:g} s")
        else:  # connected and silent
            self.transport.close()

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` unless another response is under way or queued, then close the connection."""
        if self.in_headers:  # self.cycle is the previous request's
            free = self.cycle is None or self.cycle.response_complete
        else:
            free = self.cycle is not None and not self.cycle.response_started
        if free and not self.pipeline and not self.transport.is_closing():
            text = reason.encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                                 % (status, REASONS[status], len(text), text))
        self.transport.close()

    def _cancel_read_timer(self) -> None:
        if self.read_timer is not None:
            self.read_timer.cancel()
            self.read_timer = None


REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def protocol_class(settings: Any, nodelay: bool) -> type[HttpProtocol]:
    """The HttpProtocol with this server's limits (uvicorn builds one instance per connection)."""
    return type("ServingProtocol", (HttpProtocol,), {"nodelay": nodelay, "max_header_bytes": settings.max_header_bytes,
                                                 "read_timeout": settings.read_timeout})


def _server_class() -> Any:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """SIGTERM/SIGINT: not ready at once, exit after the drain period (in-flight requests finish)."""

        drain_seconds: float = 0.0
        app_state: Any = None
        _deadline: float | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self._deadline is not None:  # second signal: stop now
                self.should_exit = True
                return
            if self.app_state is not None:
                self.app_state.draining = True
            self._deadline = time.monotonic() + self.drain_seconds

        async def on_tick(self, counter: int) -> bool:
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self.should_exit = True
            return await super().on_tick(counter)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            """Accept what the kernel has queued (closing a listening socket resets those
            connections), then uvicorn's shutdown: stop listening, drain each connection."""
            listening = [s.fileno() for server in self.servers for s in server.sockets]
            deadline = time.monotonic() + IDLE_GRACE_SECONDS
            while listening and time.monotonic() < deadline and select.select(listening, [], [], 0)[0]:
                await asyncio.sleep(0.01)
            await super().shutdown(sockets)

    return DrainingServer


def _bind(host: str, port: int, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A listening socket. With reuse_port, every worker binds its own and the kernel spreads
    connections evenly (one shared socket lets one busy worker take most of them: long tails)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _run_worker(app: Any, sock: socket.socket, settings: Any, nodelay: bool) -> None:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config(app, http=protocol_class(settings, nodelay), loop=loop, lifespan="on", access_log=False,
                            log_level=os.environ.get("MLOPS_LOG_LEVEL", "warning"), timeout_graceful_shutdown=30,
                            timeout_keep_alive=settings.keep_alive_seconds)
    server = _server_class()(config)
    server.drain_seconds = settings.drain_seconds
    server.app_state = app.state.serving
    server.run(sockets=[sock])


def serve(host: str, port: int, workers: int, model_dir: Path, contract_path: Path | None = None,
          contract: Any = None) -> int:
    """Load the model, bind, fork `workers` processes and supervise them until SIGTERM."""
    workers = max(1, workers)
    metrics_dir = None  # made here, so removed here at exit
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-metrics-")
    try:
        return _serve(host, port, workers, model_dir, contract_path, contract)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def _serve(host: str, port: int, workers: int, model_dir: Path, contract_path: Path | None, contract: Any) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ["MLOPS_MODEL_DIR"] = str(model_dir)

    from pipeline.serving import contract as contract_mod
    from pipeline.serving import predictor
    from pipeline.serving.app import create_app
    from pipeline.serving.settings import Settings

    settings = Settings()
    if contract is None:
        contract = contract_mod.load(contract_path or model_dir / "contract.json")
    # onnxruntime when the build verified an ONNX graph for this model file; else scikit-learn.
    loaded = predictor.load(model_dir, contract, onnx=settings.onnx, workers=workers)
    problem = predictor.warm_up_problem(loaded, predictor.warm_up_rows(model_dir, contract), contract)
    if problem:
        print(f"error: {model_dir}: the model cannot warm up: {problem}", file=sys.stderr, flush=True)
        return 1
    reuse_port = workers > 1 and hasattr(socket, "SO_REUSEPORT") and os.environ.get("MLOPS_REUSE_PORT", "1") != "0"
    # Fails here, before forking, if the port is taken. With reuse_port the parent only holds the
    # port (bound, not listening, so the kernel never queues connections on it).
    sock = _bind(host, port, reuse_port, listen=not reuse_port)
    nodelay = os.environ.get("MLOPS_TCP_NODELAY", "1") != "0"
    print(f"serving {model_dir} on http://{host}:{port} with {workers} worker(s)", file=sys.stderr, flush=True)
    if workers == 1:
        _run_worker(create_app(settings, contract, loaded), sock, settings, nodelay)
        return 0

    def worker() -> None:
        own = _bind(host, port, True) if reuse_port else sock
        if reuse_port:
            sock.close()
        _run_worker(create_app(settings, contract, loaded), own, settings, nodelay)

    return _supervise(workers, worker)


def _supervise(workers: int, run: Any) -> int:
    """Fork the workers; replace one that dies; forward SIGTERM/SIGINT and wait for all.

    Exits 0 after a signal, 1 when workers keep dying (more than MAX_RESTARTS in RESTART_WINDOW s)."""
    children: set[int] = set()
    deaths: collections.deque[float] = collections.deque()
    stopping = False
    code = 0

    def forward(sig: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def spawn() -> None:
        # Signals stay blocked across fork so a child never runs the parent's handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        if stopping:  # a signal came while the last one was being reaped
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
            return
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
            try:
                run()
            finally:
                os._exit(0)
        children.add(pid)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for _ in range(workers):
        spawn()
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if stopping:
            continue
        now = time.monotonic()
        deaths.append(now)
        while deaths and deaths[0] < now - RESTART_WINDOW:
            deaths.popleft()
        if len(deaths) > MAX_RESTARTS:
            print(f"{len(deaths)} workers died within {RESTART_WINDOW:g} s: stopping", file=sys.stderr, flush=True)
            code = 1
            forward(signal.SIGTERM, None)
            continue
        print(f"worker {pid} exited ({_describe(status)}): starting a new one", file=sys.stderr, flush=True)
        spawn()
    return code


def _describe(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"code {code}"


def main() -> int:
    """Entry point of the image: everything from the environment."""
    model_dir = Path(os.environ.get("MLOPS_MODEL_DIR", "/srv/model"))
    contract = os.environ.get("MLOPS_CONTRACT")
    return serve(
        host=os.environ.get("MLOPS_HOST", "0.0.0.0"),
        port=int(os.environ.get("MLOPS_PORT", "8080")),
        workers=int(os.environ.get("MLOPS_WORKERS", str(os.cpu_count() or 1))),
        model_dir=model_dir,
        contract_path=Path(contract) if contract else None,
    )
