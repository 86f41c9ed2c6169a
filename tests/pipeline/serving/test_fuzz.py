"""schemathesis against the live `mlops serve`: at least 1000 generated requests from the OpenAPI
document (valid and schema-violating), 0 failures: no 5xx, no undocumented status or content type,
every violating request rejected, every valid one answered with a response matching its schema."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engines import free_port, http_ok

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


@pytest.fixture(scope="module")
def live_server(model_dir: Path) -> Iterator[str]:
    """`mlops serve` as users start it; small batch limit so generated batches stay quick."""
    port = free_port()
    env = {**os.environ, "MLOPS_MAX_ROWS": "20"}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", "--model", str(model_dir), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not http_ok(f"{url}/ready"):
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
        assert time.monotonic() < deadline, "mlops serve not ready in 60s"
        time.sleep(0.2)
    yield url
    proc.terminate()
    assert proc.wait(30) == 0, "mlops serve did not exit cleanly on SIGTERM"


def test_schemathesis_1000_cases_no_failures(live_server: str) -> None:
    st = Path(sys.executable).parent / "st"
    result = subprocess.run([str(st), "--config-file", str(HERE / "schemathesis.toml"), "run", f"{live_server}/openapi.json",
                             "--checks", "all", "--max-examples", "1000", "--seed", "1", "-w", "1"],
                            capture_output=True, text=True, timeout=900)
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    generated = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert generated, summary
    print(f"schemathesis: {generated.group(0)}")
    assert int(generated.group(1)) >= 1000 and generated.group(1) == generated.group(2), summary
