"""Writing files so that a reader never sees half of one, and one writer per workspace at a time.

Why: a killed run must not leave a truncated `validate.json` or cache that a later run believes,
and two `mlops` commands in one folder must not interleave their outputs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

# How long a second command waits for the workspace lock before giving up (seconds).
LOCK_WAIT_SECONDS = float(os.environ.get("MLOPS_LOCK_WAIT", "600"))


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically (temp file in the same folder, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def staging_dir(target: Path) -> Path:
    """A fresh empty folder beside `target`, to be moved into place with `replace_dir`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))


def replace_dir(staged: Path, target: Path) -> None:
    """Put a fully written folder in place of `target` (the old one is removed first)."""
    remove(target)
    os.replace(staged, target)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def digest(path: Path) -> str:
    """Content hash of a file or a whole folder (names and bytes); 'missing' when absent."""
    if path.is_file():
        return file_hash(path)
    if not path.is_dir():
        return "missing"
    sha = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        sha.update(str(item.relative_to(path)).encode() + b"\0" + file_hash(item).encode() + b"\0")
    return "dir:" + sha.hexdigest()


def file_hash(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


@contextlib.contextmanager
def workspace_lock(state_dir: Path, command: str, wait: float | None = None) -> Iterator[None]:
    """Hold `.mlops/lock` for the duration of one command; a second command waits, then refuses.

    The lock is an OS file lock (released by the kernel if the holder is killed), so a crashed
    run never leaves the workspace locked.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "lock"
    handle = path.open("a+", encoding="utf-8")
    try:
        if not _try_lock(handle):
            holder = path.read_text(encoding="utf-8").strip() or "another mlops command"
            limit = LOCK_WAIT_SECONDS if wait is None else wait
            print(f"mlops: waiting for the workspace lock {path} (held by {holder}; up to {limit:.0f}s)",
                  file=sys.stderr, flush=True)
            deadline = time.monotonic() + limit
            while not _try_lock(handle):
                if time.monotonic() >= deadline:
                    raise PipelineError(f"{path}: the workspace is busy ({holder}); run one mlops command at a time per folder")
                time.sleep(0.2)
        handle.seek(0)
        handle.truncate()
        handle.write(f"`mlops {command}`, pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


def _try_lock(handle: Any) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
