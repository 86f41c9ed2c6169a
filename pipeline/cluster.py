"""Where the train step's parallel work runs: this machine, or a Ray cluster (`train.backend: ray`,
or `RAY_ADDRESS` set).

With Ray, scikit-learn's joblib work (the search's trials, and a forest's trees) runs as Ray
tasks through Ray's joblib backend: the training frame is put into Ray's object store once and
the trials get its reference (`share`), never files. The address is the head's GCS (`host:port`,
the driver on the cluster's network) or a Ray Client address (`ray://host:10001`, a driver
outside the cluster such as a hosted CI runner, which cannot accept the cluster's connections
back). The connection lives exactly as long as the `with` block and is shut down in a finally,
so a failed search leaves no task or actor behind on the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pandas as pd

from pipeline.config import Config
from pipeline.errors import PipelineError, clip

RAY_ADDRESS = "RAY_ADDRESS"
CONNECT_TIMEOUT = 5.0  # seconds to wait for the head's port before calling the cluster unreachable


def ray_address(config: Config, environ: dict[str, str] | os._Environ[str]) -> str | None:
    """The Ray cluster to use, or None for local: RAY_ADDRESS when set, which `train.backend:
    ray` requires (the address is a deployment value, kept out of mlops.yaml)."""
    address = environ.get(RAY_ADDRESS, "").strip()
    if config.train.backend == "ray" and not address:
        raise PipelineError("train.backend: ray needs the cluster's address in RAY_ADDRESS (host:port of the head, "
                            "e.g. 127.0.0.1:6379, or ray://host:10001 for Ray Client)", config_key="train.backend")
    return address or None


class _InObjectStore(pd.DataFrame):
    """The training frame, put into Ray's object store once: it pickles as its reference. Why:
    joblib's Ray backend ships a task's arguments with every task, so each trial would serialise
    the whole frame again; with this, a trial carries a reference and each node fetches the frame
    once. On the driver it is the frame itself (its slices are plain DataFrames)."""

    _metadata: ClassVar[list[str]] = ["_ray_ref"]

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (_fetch, (self._ray_ref,))


_fetched: dict[str, pd.DataFrame] = {}  # this worker process's copy of the last frame it was given


def _fetch(ref: Any) -> pd.DataFrame:
    """On a Ray worker: the frame behind the reference, from the node's object store the first
    time this process sees it, then from memory (the pool's actors run many trials each; fetching
    and unpickling the frame again for every one would cost what shipping it did)."""
    import ray

    key = ref.hex()
    if key not in _fetched:
        _fetched.clear()
        _fetched[key] = ray.get(ref)
    return _fetched[key]


def _as_is(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


@contextlib.contextmanager
def backend(address: str | None) -> Iterator[Callable[[pd.DataFrame], pd.DataFrame]]:
    """Run the block's joblib work locally (address None) or on the Ray cluster at `address`.
    It yields `share`: give the training frame to it, and pass what it returns to the search (on
    Ray, the frame then reaches the trials through the object store once; locally, unchanged)."""
    if address is None:
        try:
            yield _as_is
        finally:
            _stop_local_workers()
        return
    ray, joblib = _import_ray()
    _probe(address)
    connect(ray.init, ray.shutdown, address)
    try:
        from ray.util.joblib import register_ray

        register_ray()

        def share(frame: pd.DataFrame) -> pd.DataFrame:
            shared = _InObjectStore(frame)
            shared._ray_ref = ray.put(pd.DataFrame(frame))
            return shared

        with joblib.parallel_backend("ray"):
            yield share
    except ray.exceptions.RayError as exc:
        raise PipelineError(f"train: the Ray cluster at {address} failed mid-search (a worker node died or was "
                            f"killed?): {type(exc).__name__}: {clip(_first_line(str(exc)), 300)}") from None
    except KeyError as exc:
        if exc.args != ("CPU",):
            raise
        # Ray's joblib backend sizes each dispatch by cluster_resources()["CPU"], absent once no
        # node with a CPU is left
        raise PipelineError(f"train: the Ray cluster at {address} failed mid-search: no CPU left in the cluster "
                            "(its worker nodes died or were killed?)") from None
    finally:
        ray.shutdown()


CLIENT_SERVER_RETRIES = 3
# Ray Client starts a server process per session; on Ray 2.x that start sometimes dies at once
# (a gRPC poller race in Ray's worker shim: "epoll_wait error: Bad file descriptor", one session
# in sixteen in a loop here) and the proxy answers with this. A new session usually starts fine.
_CLIENT_SERVER_DIED = "Starting Ray client server failed"


def connect(init: Callable[..., Any], shutdown: Callable[[], None], address: str,
            retries: int = CLIENT_SERVER_RETRIES) -> None:
    """`ray.init` at `address`, tried up to `retries` times for Ray Client's transient
    server-start failure only; any other failure, or the last attempt's, is one line naming the
    address (the last line of Ray's message: the proxy sends its whole traceback)."""
    for attempt in range(1, retries + 1):
        try:
            init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            return
        except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ...: the user needs one line
            with contextlib.suppress(Exception):
                shutdown()
            if _CLIENT_SERVER_DIED in str(exc) and attempt < retries:
                logging.getLogger(__name__).warning("Ray Client's server for this session did not start "
                                                    "(attempt %d of %d); trying again", attempt, retries)
                continue
            lines = [line for line in str(exc).splitlines() if line.strip()]
            raise PipelineError(f"train: cannot connect to the Ray cluster at {address} ({RAY_ADDRESS}): "
                                f"{type(exc).__name__}: {clip(lines[-1] if lines else '', 300)}") from None


def _stop_local_workers() -> None:
    """End joblib's reusable worker processes now. Why: they idle for 300 s after the search and
    hold the command's stdout open, so a caller waiting for its output (a CI step, `subprocess.run`)
    would wait five minutes for a command that has finished."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _import_ray() -> tuple[Any, Any]:
    try:
        import joblib
        import ray
    except ModuleNotFoundError:
        raise PipelineError("train.backend: ray needs the ray package (with Ray Client): pip install -e '.[ray]'",
                            config_key="train.backend") from None
    return ray, joblib


def _probe(address: str) -> None:
    """Fail fast, naming the address, when nothing listens there (ray.init would retry for a minute).
    A Ray Client address (`ray://host:10001`) is probed at its client port."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise PipelineError(f"{RAY_ADDRESS}={address}: expected host:port of the Ray head (e.g. 127.0.0.1:6379) "
                            "or a Ray Client address (ray://host:10001)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise PipelineError(f"train: the Ray cluster at {address} ({RAY_ADDRESS}) is unreachable: {exc}") from None


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
