"""Search benchmark: the same `train.search` on generated rows, on this machine (joblib's local
processes) and on a real Ray cluster on this machine (a head and a worker node on loopback, as the
engine tests start it), in one run; and Ray's scheduling overhead per trial.

Measures, each `mlops train` a subprocess timed from outside:
- local vs ray: wall time of the whole step, the fit (search + refit) time it reports, the
  per-fit cost (scikit-learn's mean fit time over the trials), and that both found the same best
  params and test metrics;
- overhead per trial: joblib tasks that do nothing but receive the training frame (what a trial
  receives), run locally and on the cluster; (ray wall − local wall) / tasks is what Ray adds to
  each trial for scheduling and shipping the data through its object store.
It prints Markdown tables; it asserts nothing. Children get OMP_NUM_THREADS=1 (one core per
fit, as Ray gives each task), so both sides use the same two cores.

Usage: python benchmarks/search.py [--rows 100000] [--repeats 2] [--tasks 48] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.engines starts the Ray cluster, as for the engine tests

SPACE = {"max_leaf_nodes": [15, 31], "learning_rate": [0.05, 0.1], "l2_regularization": [0.0, 1.0]}


def write_project(folder: Path, rows: int, seed: int = 0) -> Path:
    """Classification on `rows` generated rows: 8 numeric features (one with missing values), a category."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=rows, n_features=8, n_informative=5, random_state=seed)
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(8)]).round(4)
    frame.loc[rng.random(rows) < 0.05, "f7"] = np.nan
    frame["segment"] = rng.choice(["a", "b", "c"], size=rows)
    frame["label"] = np.where(y == 1, "yes", "no")
    frame.insert(0, "row_id", [f"r{i:07d}" for i in range(rows)])
    (folder / "data").mkdir(parents=True)
    frame.to_csv(folder / "data" / "train.csv", index=False)
    frame.sample(n=min(rows, 5000), random_state=1).to_csv(folder / "data" / "reference.csv", index=False)
    columns: dict[str, Any] = {"row_id": {"type": "string", "unique": True},
                               **{f"f{i}": {"type": "float"} for i in range(8)},
                               "segment": {"type": "category", "allowed": ["a", "b", "c"]},
                               "label": {"type": "category", "allowed": ["no", "yes"]}}
    columns["f7"].update(nullable=True, max_null_rate=0.2)
    raw = {"project": "search-bench", "task": "classification", "seed": 7,
           "data": {"path": "data/train.csv", "reference": "data/reference.csv", "target": "label",
                    "id_column": "row_id", "positive_class": "yes"},
           "validate": {"min_rows": 10, "columns": columns},
           "train": {"estimator": "hist_gradient_boosting", "params": {"max_iter": 60},
                     "search": {"method": "grid", "space": SPACE, "folds": 3}},
           "evaluate": {"champion": {"metric": "roc_auc", "tolerance": 0.02}}}
    (folder / "mlops.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def child_env(address: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["OMP_NUM_THREADS"] = "1"
    if address:
        env["RAY_ADDRESS"] = address
    return env


def mlops(folder: Path, command: str, address: str | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", command], cwd=folder, env=child_env(address),
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mlops {command} failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall


OVERHEAD = """
import sys, time, joblib, pandas as pd
frame = pd.read_csv(sys.argv[1])
tasks = int(sys.argv[2])
def receive(frame):
    return len(frame)
if len(sys.argv) > 3:
    import ray
    from ray.util.joblib import register_ray
    ray.init(address=sys.argv[3], logging_level="ERROR", log_to_driver=False)
    register_ray()
    backend = "ray"
else:
    backend = "loky"
with joblib.parallel_backend(backend):
    joblib.Parallel(n_jobs=-1)(joblib.delayed(receive)(frame) for _ in range(2))  # workers up
    started = time.perf_counter()
    joblib.Parallel(n_jobs=-1)(joblib.delayed(receive)(frame) for _ in range(tasks))
    print(time.perf_counter() - started)
"""


def overhead(data: Path, tasks: int, address: str | None) -> float:
    args = [sys.executable, "-c", OVERHEAD, str(data), str(tasks), *([address] if address else [])]
    done = subprocess.run(args, env=child_env(None), capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=48, help="no-op tasks for the overhead figure")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds; medians are shown")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from tests.engines import RayCluster

    os.environ["OMP_NUM_THREADS"] = "1"  # the cluster's nodes inherit it
    work = Path(tempfile.mkdtemp(prefix="search-bench-"))
    local, remote = write_project(work / "local", args.rows), write_project(work / "ray", args.rows)
    print(f"{args.rows:,} rows, grid of {2 ** len(SPACE)} candidates x 3 folds; cluster starting", file=sys.stderr)
    cluster = RayCluster(head_cpus=1, worker_cpus=1, workers=1)
    try:
        figures: dict[str, Any] = {"rows": args.rows, "candidates": 2 ** len(SPACE), "folds": 3, "repeats": args.repeats}
        sides = [("local", local, None), ("ray", remote, cluster.address)]
        runs: dict[str, list[dict[str, Any]]] = {"local": [], "ray": []}
        for folder in (local, remote):
            mlops(folder, "validate")
        for round_ in range(args.repeats):  # interleaved, the order flipped each round: machine noise hits both
            for name, folder, address in sides if round_ % 2 == 0 else sides[::-1]:
                print(f"round {round_ + 1}: train on {name}", file=sys.stderr)
                wall = mlops(folder, "train", address)
                result = json.loads((folder / "outputs" / "train.json").read_text())
                trials = result["search"]["trials"]
                runs[name].append({"wall": wall, "fit": result["fit_seconds"], "best": result["search"]["best_params"],
                                   "metrics": result["metrics"],
                                   "mean_fit": sum(t["fit_seconds"] for t in trials) / len(trials)})
        for name, rounds in runs.items():
            figures[name] = {**rounds[-1], **{k: statistics.median(r[k] for r in rounds) for k in ("wall", "fit", "mean_fit")}}
        data = local / "data" / "train.csv"
        print("overhead", file=sys.stderr)
        figures["overhead_local"] = overhead(data, args.tasks, None)
        figures["overhead_ray"] = overhead(data, args.tasks, cluster.address)
    finally:
        cluster.stop()
    report(figures, args.tasks)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


def report(f: dict[str, Any], tasks: int) -> None:
    fits = f["candidates"] * f["folds"]
    print(f"## The same search, medians of {f['repeats']} interleaved rounds, {f['rows']:,} rows, "
          f"{f['candidates']} candidates x {f['folds']} folds = {fits} fits, 2 cores\n")
    print("| backend | `mlops train` wall s | search + refit s | mean fit s (per fold) | best params |")
    print("|---|---:|---:|---:|---|")
    for name in ("local", "ray"):
        row = f[name]
        print(f"| {name} | {row['wall']:.1f} | {row['fit']:.1f} | {row['mean_fit']:.2f} | {row['best']} |")
    same = f["local"]["best"] == f["ray"]["best"] and all(
        abs(f["local"]["metrics"][k] - f["ray"]["metrics"][k]) < 1e-9 for k in f["local"]["metrics"])
    print(f"\nSame best params and test metrics on both: {'yes' if same else 'NO'}\n")
    per_task = (f["overhead_ray"] - f["overhead_local"]) / tasks
    print(f"## Scheduling overhead per trial ({tasks} no-op tasks, each given the {f['rows']:,}-row frame)\n")
    print("| backend | wall s | per task ms |\n|---|---:|---:|")
    print(f"| local (loky) | {f['overhead_local']:.2f} | {1000 * f['overhead_local'] / tasks:.1f} |")
    print(f"| ray | {f['overhead_ray']:.2f} | {1000 * f['overhead_ray'] / tasks:.1f} |")
    print(f"\nRay adds {1000 * per_task:.1f} ms per trial over local.")


if __name__ == "__main__":
    main()
