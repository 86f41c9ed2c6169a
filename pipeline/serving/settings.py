"""Serving settings from the environment (the image and `mlops serve` set them).

Why the environment: the same image runs in swarm, Kubernetes and locally; deployment values
(lineage, limits) are injected there, never baked into code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.serving.schema import DEFAULT_MAX_ROWS


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@dataclass(frozen=True)
class Settings:
    model_dir: Path = field(default_factory=lambda: Path(_env("MLOPS_MODEL_DIR", "/srv/model")))
    contract: Path | None = field(default_factory=lambda: Path(p) if (p := os.environ.get("MLOPS_CONTRACT")) else None)
    max_body_bytes: int = field(default_factory=lambda: int(_env("MLOPS_MAX_BODY_BYTES", str(1024 * 1024))))
    max_rows: int = field(default_factory=lambda: int(_env("MLOPS_MAX_ROWS", str(DEFAULT_MAX_ROWS))))
    predict_timeout: float = field(default_factory=lambda: float(_env("MLOPS_PREDICT_TIMEOUT", "5")))
    # Serve the ONNX graph the build verified for this model file, when there is one (0: scikit-learn).
    onnx: bool = field(default_factory=lambda: _env("MLOPS_ONNX", "1") != "0")
    drain_seconds: float = field(default_factory=lambda: float(_env("MLOPS_DRAIN_SECONDS", "0")))
    # Hostile or broken clients: bytes of request line + headers (431 past it), and seconds a
    # request may take to arrive whole, from connect or its first byte (408 and close past it);
    # an idle keep-alive connection is closed after keep_alive_seconds.
    max_header_bytes: int = field(default_factory=lambda: int(_env("MLOPS_MAX_HEADER_BYTES", str(64 * 1024))))
    read_timeout: float = field(default_factory=lambda: float(_env("MLOPS_READ_TIMEOUT", "10")))
    keep_alive_seconds: float = field(default_factory=lambda: float(_env("MLOPS_KEEP_ALIVE_SECONDS", "15")))
    git_sha: str = field(default_factory=lambda: _env("MLOPS_GIT_SHA", "unknown"))
    model_version: str = field(default_factory=lambda: _env("MLOPS_MODEL_VERSION", "unknown"))
    model_uri: str = field(default_factory=lambda: _env("MLOPS_MODEL_URI", "unknown"))
    data_hash: str = field(default_factory=lambda: _env("MLOPS_DATA_HASH", "unknown"))
    image_digest: str = field(default_factory=lambda: _env("MLOPS_IMAGE_DIGEST", "unknown"))
    # The prediction log (pipeline/serving/predlog.py): a sqlite file the workers share,
    # postgresql://... for several replicas, or "off"; rows older than the retention are pruned.
    prediction_log: str = field(default_factory=lambda: _env("MLOPS_PREDICTION_LOG", "/srv/state/predictions.db"))
    prediction_log_retention_days: float = field(
        default_factory=lambda: float(_env("MLOPS_PREDICTION_LOG_RETENTION_DAYS", "30")))
