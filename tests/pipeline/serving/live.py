"""Real servers for the serving tests, over loopback only.

`in_thread(app)`: one app under uvicorn and the production protocol (limits, TCP_NODELAY) on a
free port in a thread, with an httpx client: the in-process tests talk real HTTP (starlette's
TestClient with httpx is deprecated). `Process`: `python -m pipeline.serving` or `mlops serve` as
a child process, its log in a file, for what only a whole process shows (signals, workers).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.engines import free_port, http_ok

REPO = Path(__file__).resolve().parents[3]


@contextmanager
def in_thread(app: Any, lifespan: bool = True, settings: Any = None) -> Iterator[httpx.Client]:
    """Serve `app` on 127.0.0.1 until the block ends; `lifespan=False` never loads the model.
    `settings`: the server's limits when `app` is an inner layer that has no `state`."""
    import uvicorn

    from pipeline.serving.server import protocol_class

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    limits = settings or app.state.serving.settings
    config = uvicorn.Config(app, http=protocol_class(limits, True), lifespan="on" if lifespan else "off",
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive(), "the server stopped during start-up (see the log above)"
        assert time.monotonic() < deadline, "the server did not start in 120 s"
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


class Process:
    """A server process on a free loopback port; `log` is its stderr (stdout too)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = REPO) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        full_env = {**os.environ, "MLOPS_HOST": "127.0.0.1", "MLOPS_PORT": str(self.port), **(env or {})}
        args = [a.replace("{port}", str(self.port)) for a in args]
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> Process:
        deadline = time.monotonic() + timeout
        while not http_ok(f"{self.url}/ready"):
            assert self.proc.poll() is None, self.text()
            assert time.monotonic() < deadline, f"not ready in {timeout} s\n{self.text()}"
            time.sleep(0.2)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


def served_model(model_dir: Path, log: Path, workers: int = 1, **env: str) -> Process:
    """The image's entry point (`python -m pipeline.serving`) on the fixture model, ready."""
    from pipeline.serving.contract import write

    contract = log.parent / "contract.json"
    if not contract.exists():
        from pipeline.config import load_config
        from pipeline.delivery.contract import from_config

        write(from_config(load_config(REPO / "mlops.yaml")), contract)
    return Process(["-m", "pipeline.serving"], log, {"MLOPS_MODEL_DIR": str(model_dir), "MLOPS_CONTRACT": str(contract),
                                                     "MLOPS_WORKERS": str(workers), **env}).wait_ready()


def send_labelled(url: str, frame: Any, label: str, labels: bool = True, batch: int = 50) -> None:
    """Every row of `frame` (a scored frame: `label`, `prediction` and `score` are dropped from the
    request) to /predict in `batch`-row requests and, with `labels`, each request's true labels to
    /feedback: the traffic a monitored deployment sees."""
    rows = frame.drop(columns=[label, "prediction", "score"]).astype(object)
    rows = rows.where(rows.notna(), None)
    with httpx.Client(base_url=url, timeout=60) as http:
        for start in range(0, len(frame), batch):
            answer = http.post("/predict", json={"rows": rows.iloc[start:start + batch].to_dict("records")})
            assert answer.status_code == 200, answer.text
            if labels:
                fed = http.post("/feedback", json={"request_id": answer.json()["request_id"],
                                                   "labels": frame[label].iloc[start:start + batch].tolist()})
                assert fed.status_code == 200, fed.text
