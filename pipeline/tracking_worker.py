"""MLflow in a second process while `mlops run` validates and fits.

Why: on a cold run MLflow cost as much CPU as everything else together (importing it and
opening its store: about 1.1 s here, skops 0.3 s) before train could log anything. `mlops run`
imports pandas and scikit-learn (it needs them anyway), then forks the tracking process, which
inherits them, imports MLflow and skops and opens the store on the second core while validate
and the fit run here. Then it serves the `pipeline.tracking` functions marked `@remote`, one
call at a time. Nothing changes for callers: every call still blocks until MLflow has answered,
its return value comes back, and any failure comes back as a PipelineError naming the call (a
failed MLflow write fails its step, never silently). What cannot be handed over (an object that
does not pickle) runs in this process, as it would without it. Measured in benchmarks/README.md.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from multiprocessing.connection import Connection
from typing import Any

from pipeline import tracking
from pipeline.config import Config
from pipeline.errors import PipelineError

STOP = None


class TrackingWorker:
    """The parent's end: `call` sends one `pipeline.tracking` call and waits for its answer."""

    def __init__(self, config: Config) -> None:
        context = multiprocessing.get_context("fork")  # inherits the imported libraries: nothing is imported twice
        self._conn, child = context.Pipe()
        self._process = context.Process(target=serve, args=(child, config), name="mlops-tracking", daemon=True)
        self._process.start()
        child.close()
        self._idle: list[Callable[[], None]] = []

    def when_idle(self, work: Callable[[], None]) -> None:
        """Work for this process to do once, while it waits for the tracking process's answer
        to a call (the first, on a cold run, waits for MLflow to start: over a second)."""
        self._idle.append(work)

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            self._conn.send((name, args, kwargs))
        except (pickle.PicklingError, TypeError, AttributeError):
            return getattr(tracking, name).__wrapped__(*args, **kwargs)  # nothing was sent: run it here
        except OSError as exc:
            raise self._died(name, exc) from None
        while self._idle:
            self._idle.pop(0)()
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise self._died(name, exc) from None
        if status != "ok":
            raise PipelineError(value)
        return value

    def _died(self, name: str, exc: BaseException) -> PipelineError:
        self._process.join(timeout=5)
        return PipelineError(f"MLflow: the tracking process ended during {name} (exit code {self._process.exitcode}, "
                             f"{type(exc).__name__}); nothing after it was recorded")

    def close(self) -> None:
        """Stop after the call in progress; every call has been answered by then."""
        with suppress(OSError):
            self._conn.send(STOP)
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join()
        self._conn.close()


@contextmanager
def started(config: Config) -> Iterator[TrackingWorker | None]:
    """Route the `@remote` functions of `pipeline.tracking` through a new tracking process
    (on Linux; elsewhere fork is not a safe default, and MLflow stays in this process)."""
    if not sys.platform.startswith("linux"):
        yield None
        return
    shared_imports(config)
    worker = TrackingWorker(config)
    tracking._REMOTE = worker
    try:
        yield worker
    finally:
        tracking._REMOTE = None
        worker.close()


def serve(conn: Connection, config: Config) -> None:
    """The tracking process: warm up, then answer calls until told to stop or the parent is gone.
    It ends with `os._exit`, as `mlops` does (`pipeline.cli.console`): every call was answered and
    MLflow's store written per call, and tearing MLflow down would cost the parent a second."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; its exit ends this loop
    # MLflow scores the model it reloads; in a daemon process scikit-learn runs that with one job
    # (as it would anyway for a handful of rows) and warns about it on every cold run.
    warnings.filterwarnings("ignore", message="Loky-backed parallel loops cannot be called in a multiprocessing")
    warm_up(config)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = STOP
        if message is STOP:
            logging.shutdown()
            sys.stderr.flush()
            os._exit(0)
        name, args, kwargs = message
        try:
            reply: tuple[str, Any] = ("ok", getattr(tracking, name).__wrapped__(*args, **kwargs))
        except PipelineError as exc:
            reply = ("error", str(exc))
        except Exception as exc:  # MLflow raises many types; the step needs one clear line
            reply = ("error", f"MLflow: {name} failed: {type(exc).__name__}: {exc}")
        try:
            conn.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send(("error", f"MLflow: {name}: its result cannot be handed back ({type(exc).__name__}: {exc})"))


def shared_imports(config: Config) -> None:
    """What both processes need, imported once before the fork: pandas and the model's
    scikit-learn modules (the fitted model unpickles into them in the tracking process)."""
    from pipeline.train import new_model

    with suppress(PipelineError):  # train reports a bad estimator or parameter itself
        new_model(config)


def warm_up(config: Config) -> None:
    """What the first calls need, done before they arrive: MLflow, its store, skops."""
    try:
        tracking.configure(config)
        for name in ("mlflow.models", "mlflow.sklearn", "skops.io"):
            importlib.import_module(name)
    except Exception:  # the first real call meets the same problem and reports it
        pass
