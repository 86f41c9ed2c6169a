"""`mlops monitor`: live rows from production (the prediction log or a file) judged with the
same metric and drift code as the pull-request path, an N-of-M decision, and one retraining
pull request per model.

- `source.py` reads the live rows into one frame (features, target when labelled, time, prediction).
- `decision.py` splits the window into buckets, measures each, and decides.
- `report.py` writes the Markdown report (also the retraining PR's body).
- `prom.py` writes the figures in Prometheus' text format and pushes them to a Pushgateway.
- `pullrequest.py` opens, updates and closes the retraining pull request (GitHub REST API).
"""

from __future__ import annotations

import re

UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def seconds(duration: str) -> float:
    """`30m`, `12h`, `7d`, `2w` in seconds; a ValueError names the expected form."""
    match = re.fullmatch(r"([0-9]+)([mhdw])", duration.strip())
    if not match:
        raise ValueError(f"{duration!r} is not a duration such as 30m, 12h, 7d or 2w")
    return int(match.group(1)) * UNITS[match.group(2)]
