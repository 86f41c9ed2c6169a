"""Run the app under uvicorn with N pre-forked workers, TCP_NODELAY and a graceful drain.

Why our own pre-fork instead of `uvicorn --workers`: the model is loaded once in the parent and
shared copy-on-write; each accepted socket gets TCP_NODELAY explicitly (without it, keep-alive
responses can wait ~40 ms for Nagle + delayed ACK); and SIGTERM first flips /ready to 503, keeps
serving for MLOPS_DRAIN_SECONDS (so load balancers stop sending), then finishes in-flight
requests and exits 0.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def nodelay_protocol(enabled: bool) -> Any:
    """uvicorn's httptools protocol (h11 as fallback) with TCP_NODELAY set on each connection."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # httptools not installed
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]  # same interface

    class NoDelayProtocol(Base):
        def connection_made(self, transport: Any) -> None:
            sock = transport.get_extra_info("socket")
            if enabled and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().connection_made(transport)

    return NoDelayProtocol


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


def _run_worker(app: Any, sock: socket.socket, drain_seconds: float, nodelay: bool) -> None:
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    config = uvicorn.Config(app, http=nodelay_protocol(nodelay), loop=loop, lifespan="on", access_log=False,
                            log_level=os.environ.get("MLOPS_LOG_LEVEL", "warning"), timeout_graceful_shutdown=30,
                            timeout_keep_alive=15)
    server = _server_class()(config)
    server.drain_seconds = drain_seconds
    server.app_state = app.state.serving
    server.run(sockets=[sock])


def serve(host: str, port: int, workers: int, model_dir: Path, contract_path: Path | None = None,
          contract: Any = None) -> int:
    """Load the model, bind, fork `workers` processes and supervise them until SIGTERM."""
    workers = max(1, workers)
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mlops-metrics-")
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
    # NumPy only when a verified fast path was compiled next to the model; else scikit-learn.
    loaded = (predictor.load_compiled(model_dir, contract) if settings.fast_path else None) or predictor.load(model_dir, contract)
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
        _run_worker(create_app(settings, contract, loaded), sock, settings.drain_seconds, nodelay)
        return 0

    def worker() -> None:
        own = _bind(host, port, True) if reuse_port else sock
        if reuse_port:
            sock.close()
        _run_worker(create_app(settings, contract, loaded), own, settings.drain_seconds, nodelay)

    return _supervise(workers, worker)


def _supervise(workers: int, run: Any) -> int:
    """Fork the workers; forward SIGTERM/SIGINT; exit non-zero if a worker dies on its own."""
    children: set[int] = set()
    stopping = False

    def forward(sig: int, _: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                run()
            finally:
                os._exit(0)
        children.add(pid)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        if not stopping:
            code = os.waitstatus_to_exitcode(status) or 1
            forward(signal.SIGTERM, None)
    return code


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
