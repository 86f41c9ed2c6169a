"""Where the train step's parallel work runs: this machine, or a Ray cluster (`train.backend: ray`,
or `RAY_ADDRESS` set).

With Ray, scikit-learn's joblib work (the search's trials, and a forest's trees) runs as Ray
tasks through Ray's joblib backend: the training frame travels to the workers through Ray's
object store, never as files. The connection lives exactly as long as the `with` block and is
shut down in a finally, so a failed search leaves no task or actor behind on the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

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
                            "e.g. 127.0.0.1:6379)", config_key="train.backend")
    return address or None


@contextlib.contextmanager
def backend(address: str | None) -> Iterator[None]:
    """Run the block's joblib work locally (address None) or on the Ray cluster at `address`."""
    if address is None:
        try:
            yield
        finally:
            _stop_local_workers()
        return
    ray, joblib = _import_ray()
    _probe(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ...: the user needs one line
        raise PipelineError(f"train: cannot connect to the Ray cluster at {address} ({RAY_ADDRESS}): "
                            f"{type(exc).__name__}: {clip(str(exc), 300)}") from None
    try:
        from ray.util.joblib import register_ray

        register_ray()
        with joblib.parallel_backend("ray"):
            yield
    except ray.exceptions.RayError as exc:
        raise PipelineError(f"train: the Ray cluster at {address} failed mid-search (a worker node died or was "
                            f"killed?): {type(exc).__name__}: {clip(_first_line(str(exc)), 300)}") from None
    finally:
        ray.shutdown()


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
        raise PipelineError("train.backend: ray needs the ray package: pip install -e '.[ray]'",
                            config_key="train.backend") from None
    return ray, joblib


def _probe(address: str) -> None:
    """Fail fast, naming the address, when nothing listens there (ray.init would retry for a minute)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address.startswith("ray://"):
        raise PipelineError(f"{RAY_ADDRESS}={address}: Ray Client addresses (ray://) are not supported; "
                            "give the head's GCS address host:port, or submit `mlops train` as a Ray job")
    if not host or not port.isdigit():
        raise PipelineError(f"{RAY_ADDRESS}={address}: expected host:port of the Ray head (e.g. 127.0.0.1:6379)")
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise PipelineError(f"train: the Ray cluster at {address} ({RAY_ADDRESS}) is unreachable: {exc}") from None


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0] if lines else text
