"""The serving benchmark's prediction logs (several GB a run) are removed when it exits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_serving_benchmark_log_dirs_are_removed_at_exit() -> None:
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import serving; d = serving.log_dir(); "
            "(d / 'predictions.db').write_bytes(b'x' * 1024); print(d)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    path = Path(out.strip())
    assert path.name.startswith("predlog-bench-") and not path.exists()
