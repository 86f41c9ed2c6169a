"""Live data for the monitor tests: the bundled penguins, shuffled (a live feed is not sorted by
species), with the model's answers as a live file carries them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO


def live_rows(shift: bool, seed: int = 0, prefix: str = "live") -> pd.DataFrame:
    """333 live rows with new ids; `shift`: heavier, longer-winged birds (inside the contract) on
    which a weight rule predicting `sex` is often wrong."""
    frame = pd.read_csv(REPO / "data" / "penguins.csv").sample(frac=1.0, random_state=seed).reset_index(drop=True)
    frame["sample_id"] = [f"{prefix}-{seed}-{i}" for i in range(len(frame))]
    if shift:
        frame["body_mass_g"] = (frame["body_mass_g"] + 600).clip(upper=6900)
        frame["flipper_length_mm"] = (frame["flipper_length_mm"] + 15).clip(upper=249)
        frame["prediction"] = np.where(frame["body_mass_g"] > 4300, "male", "female")
    else:
        frame["prediction"] = frame["sex"]
    frame["score"] = np.where(frame["prediction"] == "male", 0.9, 0.1)
    return frame


@pytest.fixture()
def write_live(tmp_path: Path) -> Callable[..., Path]:
    def write(name: str, shift: bool, seed: int = 0, edit: Callable[[pd.DataFrame], pd.DataFrame] = lambda f: f) -> Path:
        path = tmp_path / name
        edit(live_rows(shift, seed)).to_csv(path, index=False)
        return path

    return write
