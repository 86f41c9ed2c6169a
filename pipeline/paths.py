"""Every artifact path, derived in one place from the config root.

`.mlops/` holds state that outlives a run (MLflow store, step cache); `outputs/` holds what a run
produces for people and for the next step (reports, metrics, the trained model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def state(self) -> Path:
        return self.root / ".mlops"

    @property
    def outputs(self) -> Path:
        return Path(os.environ.get("MLOPS_OUTPUTS", self.root / "outputs"))

    @property
    def cache(self) -> Path:
        return self.state / "cache.json"

    @property
    def local_tracking_uri(self) -> str:
        return f"sqlite:///{self.state / 'mlflow.db'}"

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or self.local_tracking_uri

    @property
    def prediction_log(self) -> str:
        """Where `mlops serve` logs predictions and labels (pipeline/serving/predlog.py) and the
        monitor reads them: MLOPS_PREDICTION_LOG (a sqlite path, postgresql://..., or off), else a
        sqlite file under .mlops/."""
        return os.environ.get("MLOPS_PREDICTION_LOG") or str(self.state / "predictions.db")

    @property
    def artifact_root(self) -> Path:
        return self.state / "artifacts"

    @property
    def model_dir(self) -> Path:
        """The trained model as an MLflow model directory (what CI caches as the champion)."""
        return self.outputs / "model"

    @property
    def report_md(self) -> Path:
        return self.outputs / "report.md"

    @property
    def plots(self) -> Path:
        return self.outputs / "plots"
