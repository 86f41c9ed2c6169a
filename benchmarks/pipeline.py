"""Benchmark the pipeline: `mlops run` against a naive script, and validate/train/evaluate at scale.

It prints figures (Markdown tables on stdout, progress on stderr); it is not a timed test and
asserts nothing. Each figure is one subprocess measured from here: wall time, CPU time and peak
resident memory (`os.wait4`), so imports, start-up and file I/O all count.

1. Peer comparison on the bundled data, interleaved round by round so machine noise hits all
   three alike, medians of `--repeats`:
   - naive: `benchmarks/naive_pipeline.py` (inline pandera, same model, same metrics, MLflow
     defaults) in a fresh empty folder, so it creates its `mlflow.db` too;
   - bare: `naive_pipeline.py --bare` (pandas read, same split, same model, predict, metrics);
   - cold: `mlops run --force` in a fresh copy of the repo (no `.mlops/`, no `outputs/`); a new
     MLflow store starts from the empty migrated one this machine cached earlier;
   - first: the same, with an empty user cache (`MLOPS_CACHE_DIR`): a new store runs all of
     MLflow's migrations, as on a machine's very first run;
   - warm: `mlops run` again in that copy, nothing changed (checked: every step a cache hit).
2. Scale: synthetic classification data (20 feature columns: 16 numeric, 4 with ~5% nulls,
   4 categorical; binary target with signal) at each of `--sizes` rows, with a generated
   mlops.yaml (full contract, reference data for drift, hist_gradient_boosting, gates, a slice,
   fairness, one behavioural test of each kind). `mlops validate`, `mlops train` and
   `mlops evaluate` as three commands (or one `mlops run --force`, `--scale-via run`) against the
   bare compute (`naive_pipeline.py --bare`: pandas read, same split, same model, predict,
   metrics).

All code runs from a snapshot of the repo taken at the start (the working tree, or `--ref`), so
edits made while it runs do not leak in; children get OMP_NUM_THREADS=1 unless `--threads`
says otherwise (see `child_env`). Run it with the project's interpreter:

    .venv/bin/python benchmarks/pipeline.py                       # both parts (~6 min on 2 busy cores)
    .venv/bin/python benchmarks/pipeline.py --skip-scale --repeats 5
    .venv/bin/python benchmarks/pipeline.py --skip-peer --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NAIVE = HERE / "naive_pipeline.py"
SNAPSHOT_IGNORE = (".git", ".venv", ".mlops", "outputs", "__pycache__", "*.egg-info", ".pytest_cache", "build",
                   "mlruns", "mlflow.db", "node_modules")
STEP_LINE = re.compile(r"\[\d+/\d+\] (\w+)\s+(?:ok|FAILED) in ([\d.]+)s")
WARM_MARK = "every step was a cache hit"
# cold ÷ naive, cold ÷ bare (same data), warm seconds, cold ÷ warm, scale ÷ bare
GOALS = {"cold": 0.35, "bare": 2.0, "warm_seconds": 0.5, "speedup": 4.0, "scale": 1.5}


# --- measuring one child ------------------------------------------------------------------------


@dataclass
class Run:
    """One subprocess: wall seconds, CPU seconds (user + sys), peak RSS in MB, exit code, logs."""

    seconds: float
    cpu: float
    peak_mb: float
    code: int
    log: Path

    @property
    def stderr(self) -> str:
        return self.log.with_suffix(".err").read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.log.with_suffix(".out").read_text(errors="replace")


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> Run:
    """Run `cmd` to completion; wall time from fork to reap, peak RSS of the child (wait4)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.with_suffix(".out").open("wb") as out, log.with_suffix(".err").open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(seconds=seconds, cpu=cpu, peak_mb=usage.ru_maxrss / 1024, code=proc.returncode, log=log)


def checked(run: Run, what: str) -> Run:
    """A failed child makes every figure meaningless: stop and show its last lines."""
    if run.code != 0:
        tail = "\n".join(run.stderr.splitlines()[-15:])
        raise SystemExit(f"benchmark: {what} exited {run.code} ({run.log}.err):\n{tail}")
    return run


# --- environment and snapshot -------------------------------------------------------------------


def snapshot(dest: Path, ref: str | None) -> Path:
    """The repo as it is now (working tree) or at `ref`, without state, caches or the venv."""
    if ref:
        dest.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    else:
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(*SNAPSHOT_IGNORE), symlinks=True)
    return dest


def child_env(src: Path, threads: int) -> dict[str, str]:
    """The caller's environment, with the snapshot's packages first and no MLflow/mlops overrides.

    `threads` > 0 sets OMP_NUM_THREADS: on 2 cores shared with other jobs, OpenMP's 2 threads made
    the same hist_gradient_boosting fit take 3-22 s where 1 thread took 1.4 s every time, noise
    that would swamp any ratio. 0 leaves the library default.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_"))}
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(src), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def mlops_cmd() -> list[str]:
    """The installed console script beside this interpreter, else the module."""
    script = Path(sys.executable).with_name("mlops")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]


def naive_cmd(config: Path, bare: bool = False) -> list[str]:
    # -P: the script's folder holds this file, which would shadow the `pipeline` package.
    return [sys.executable, "-P", str(NAIVE), "--config", str(config), *(["--bare"] if bare else [])]


def warm_up(src: Path, env: dict[str, str], work: Path) -> None:
    """Compile the snapshot and touch the heavy libraries once, so the first timed run is not special."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src / "pipeline"), str(src / "model")], check=True, env=env)
    probe = "import mlflow, sklearn, pandera.pandas, pyarrow, skops.io, pipeline; print(pipeline.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, check=True, capture_output=True, text=True)
    if not Path(out.stdout.strip()).resolve().is_relative_to(src.resolve()):
        raise SystemExit(f"benchmark: children import pipeline from {out.stdout.strip()}, not the snapshot {src}")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


# --- part 1: peer comparison --------------------------------------------------------------------


@dataclass
class PeerResults:
    runs: dict[str, list[Run]] = field(default_factory=lambda: {"naive": [], "bare": [], "first": [], "cold": [], "warm": []})
    cold_steps: list[dict[str, float]] = field(default_factory=list)
    naive_phases: list[dict[str, float]] = field(default_factory=list)
    warm_all_hits: list[bool] = field(default_factory=list)


def step_seconds(stderr: str) -> dict[str, float]:
    """Per-step timings from `mlops run` progress lines ('[2/5] train     ok in 3.10s')."""
    steps = {name: float(seconds) for name, seconds in STEP_LINE.findall(stderr)}
    register = re.search(r"register .*\(([\d.]+)s\)", stderr)
    if register:
        steps["register"] = float(register.group(1))
    return steps


def peer_round(index: int, src: Path, env: dict[str, str], work: Path, results: PeerResults) -> None:
    """One naive run and one cold+warm pair; the order alternates between rounds."""
    def naive() -> None:
        folder = work / f"naive-{index}"
        folder.mkdir()
        run = checked(measure(naive_cmd(src / "mlops.yaml"), folder, env, work / "logs" / f"naive-{index}"), "naive script")
        results.runs["naive"].append(run)
        results.naive_phases.append(json.loads(run.stdout.strip().splitlines()[-1]))

    def bare() -> None:
        run = checked(measure(naive_cmd(src / "mlops.yaml", bare=True), work, env, work / "logs" / f"bare-{index}"),
                      "bare script")
        results.runs["bare"].append(run)

    def first() -> None:
        repo = shutil.copytree(src, work / f"first-{index}", ignore=shutil.ignore_patterns("__pycache__"))
        fresh = {**env, "MLOPS_CACHE_DIR": str(work / f"empty-cache-{index}")}
        run = checked(measure([*mlops_cmd(), "run", "--force"], repo, fresh, work / "logs" / f"first-{index}"),
                      "mlops run (first store)")
        results.runs["first"].append(run)

    def ours() -> None:
        repo = shutil.copytree(src, work / f"repo-{index}", ignore=shutil.ignore_patterns("__pycache__"))
        cold = checked(measure([*mlops_cmd(), "run", "--force"], repo, env, work / "logs" / f"cold-{index}"), "mlops run --force")
        warm = checked(measure([*mlops_cmd(), "run"], repo, env, work / "logs" / f"warm-{index}"), "mlops run (warm)")
        results.runs["cold"].append(cold)
        results.runs["warm"].append(warm)
        results.cold_steps.append(step_seconds(cold.stderr))
        results.warm_all_hits.append(WARM_MARK in warm.stderr)

    for part in (naive, bare, first, ours) if index % 2 == 0 else (ours, first, bare, naive):
        part()
    r = results.runs
    say(f"peer round {index + 1}: naive {r['naive'][-1].seconds:.2f}s, bare {r['bare'][-1].seconds:.2f}s, "
        f"first {r['first'][-1].seconds:.2f}s, cold {r['cold'][-1].seconds:.2f}s, "
        f"warm {r['warm'][-1].seconds:.2f}s{'' if results.warm_all_hits[-1] else ' (NOT all cache hits)'}")


def peer(repeats: int, src: Path, env: dict[str, str], work: Path) -> PeerResults:
    results = PeerResults()
    for index in range(repeats):
        peer_round(index, src, env, work, results)
    return results


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_peer(results: PeerResults) -> dict[str, Any]:
    """The peer table, the ratios against their goals, and where the time goes."""
    secs = {name: [r.seconds for r in runs] for name, runs in results.runs.items()}
    med = {name: median(values) for name, values in secs.items()}
    cpu = {name: median([r.cpu for r in runs]) for name, runs in results.runs.items()}
    peak = {name: max(r.peak_mb for r in runs) for name, runs in results.runs.items()}
    cold, warm, speedup = med["cold"] / med["naive"], med["warm"] / med["naive"], med["cold"] / med["warm"]
    cold_bare = med["cold"] / med["bare"]
    labels = {"naive": "naive script (benchmarks/naive_pipeline.py)", "bare": "bare compute (naive_pipeline.py --bare)",
              "first": "`mlops run --force` (cold, first MLflow store on the machine)",
              "cold": "`mlops run --force` (cold, fresh copy)", "warm": "`mlops run` (warm, nothing changed)"}
    goals = {"naive": "", "bare": "", "first": "",
             "cold": f"÷ naive ≤ {GOALS['cold']:.2f}: {_mark(cold <= GOALS['cold'])}; "
                     f"÷ bare ≤ {GOALS['bare']:.1f}: {cold_bare:.2f} {_mark(cold_bare <= GOALS['bare'])}",
             "warm": f"< {GOALS['warm_seconds']:.1f} s: {_mark(med['warm'] < GOALS['warm_seconds'])}"}
    print(f"\n### Peer comparison: bundled data, medians of {len(secs['naive'])} interleaved runs\n")
    print("| run | median s | runs s | ÷ naive | ÷ bare | goal | CPU s | peak MB |")
    print("|---|---:|---|---:|---:|---|---:|---:|")
    for name in ("naive", "bare", "first", "cold", "warm"):
        runs = ", ".join(f"{s:.2f}" for s in secs[name])
        print(f"| {labels[name]} | {med[name]:.2f} | {runs} | {med[name] / med['naive']:.2f} | {med[name] / med['bare']:.2f} "
              f"| {goals[name]} | {cpu[name]:.2f} | {peak[name]:.0f} |")
    print(f"\ncold ÷ warm speed-up: {speedup:.1f}x (goal ≥ {GOALS['speedup']:.0f}x: {_mark(speedup >= GOALS['speedup'])})")
    if not all(results.warm_all_hits):
        print(f"note: {results.warm_all_hits.count(False)} warm run(s) were not all cache hits")
    steps = _median_dict(results.cold_steps)
    phases = _median_dict(results.naive_phases)
    print("cold steps (median s, from its progress lines): " + ", ".join(f"{k} {v:.2f}" for k, v in steps.items()))
    print("naive phases (median s, in-process): " + ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if k != "test_rows"))
    return {"seconds": secs, "median": med, "cpu": cpu, "peak_mb": peak, "cold_vs_naive": cold, "cold_vs_bare": cold_bare,
            "warm_vs_naive": warm, "speedup": speedup, "cold_steps": steps, "naive_phases": phases,
            "warm_all_hits": results.warm_all_hits}


def _median_dict(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for k in rows[0]] if rows else []
    return {k: median([row[k] for row in rows if k in row]) for k in keys}


# --- part 2: scale ------------------------------------------------------------------------------

NUMERIC = [f"num_{i:02d}" for i in range(16)]
NULLABLE = NUMERIC[:4]
CATEGORIES = {"cat_a": ["A", "B", "C"], "cat_group": ["g0", "g1", "g2", "g3"],
              "cat_region": [f"r{i}" for i in range(8)], "cat_noise": ["n0", "n1", "n2", "n3", "n4"]}
TARGET = "label"


def synthetic(rows: int, seed: int) -> Any:
    """A pyarrow table: 16 numeric (4 with ~5% nulls), 4 categorical, binary target with signal."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    numeric = np.clip(rng.standard_normal((rows, len(NUMERIC))), -8, 8).round(5)
    codes = {name: rng.integers(0, len(levels), rows) for name, levels in CATEGORIES.items()}
    logit = (1.2 * numeric[:, 4] - 0.8 * numeric[:, 5] + 0.6 * numeric[:, 0] * numeric[:, 6] + 0.5 * numeric[:, 1]
             + 0.7 * (codes["cat_a"] == 0) - 0.4 * (codes["cat_region"] % 3 == 1) + 0.3 * rng.standard_normal(rows))
    positive = rng.random(rows) < 1 / (1 + np.exp(-logit))
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        mask = (rng.random(rows) < 0.05) if name in NULLABLE else None
        columns[name] = pa.array(numeric[:, i], mask=mask)
    for name, levels in CATEGORIES.items():
        columns[name] = pa.DictionaryArray.from_arrays(pa.array(codes[name], pa.int32()), pa.array(levels)).cast(pa.string())
    columns[TARGET] = pa.array(np.where(positive, "pos", "neg"))
    return pa.table(columns)


def scale_config(rows: int) -> dict[str, Any]:
    """mlops.yaml for the synthetic data: every section the bundled config uses."""
    columns: dict[str, Any] = {name: {"type": "float", "min": -10, "max": 10} for name in NUMERIC}
    for name in NULLABLE:
        columns[name].update(nullable=True, max_null_rate=0.1)
    columns.update({name: {"type": "category", "allowed": levels} for name, levels in CATEGORIES.items()})
    columns[TARGET] = {"type": "category", "allowed": ["neg", "pos"]}
    row = {name: 0.0 for name in NUMERIC} | {"num_04": 2.5, "num_05": -2.0} | {n: v[0] for n, v in CATEGORIES.items()}
    return {
        "project": "bench-scale",
        "task": "classification",
        "seed": 42,
        "data": {"path": "data.csv", "reference": "reference.csv", "target": TARGET, "positive_class": "pos", "test_size": 0.25},
        "validate": {"min_rows": 1000, "extra_columns": "fail", "max_duplicate_rate": 0.0, "columns": columns,
                     "drift": {"psi_threshold": 0.2, "p_value": 0.01, "on_drift": "warn"}},
        "train": {"estimator": "hist_gradient_boosting", "params": {"max_iter": 50, "early_stopping": False}},
        "evaluate": {
            "gates": [{"metric": "accuracy", "threshold": 0.6, "direction": "higher"},
                      {"metric": "roc_auc", "threshold": 0.65, "direction": "higher"}],
            "slices": [{"column": "cat_a", "metric": "accuracy", "min": 0.55}],
            "fairness": {"column": "cat_group", "max": 0.2},
            "champion": {"metric": "roc_auc", "direction": "higher", "tolerance": 0.02},
            "behaviour": {
                "invariance": [{"name": "noise category does not matter", "column": "cat_noise",
                                "values": CATEGORIES["cat_noise"], "max_change": 0.5}],
                "directional": [{"name": "num_04 raises the score", "column": "num_04", "delta": 1.0,
                                 "expect": "increase", "min_rate": 0.7}],
                "minimum": [{"name": "a clear positive", "row": row, "expect": "pos"}],
            },
        },
        "promote": {"registered_model": "bench-scale"},
    }


def prepare_size(rows: int, folder: Path) -> Path:
    """Write data.csv, reference.csv (≤ 50k rows, another seed) and mlops.yaml; return the config."""
    import pyarrow.csv as pacsv
    import yaml

    folder.mkdir(parents=True)
    pacsv.write_csv(synthetic(rows, seed=1), folder / "data.csv")
    pacsv.write_csv(synthetic(min(rows, 50_000), seed=2), folder / "reference.csv")
    config = folder / "mlops.yaml"
    config.write_text(yaml.safe_dump(scale_config(rows), sort_keys=False))
    return config


SCALE_STEPS = ("validate", "train", "evaluate")


@dataclass
class ScaleRow:
    """One size: per round, our subprocess(es) and their per-step seconds, and the bare compute."""

    rows: int
    ours_runs: list[list[Run]] = field(default_factory=list)
    steps: list[dict[str, float]] = field(default_factory=list)
    bare: list[Run] = field(default_factory=list)

    def ours(self) -> list[float]:
        return [sum(r.seconds for r in runs) for runs in self.ours_runs]

    def ours_cpu(self) -> list[float]:
        return [sum(r.cpu for r in runs) for runs in self.ours_runs]

    def step_median(self, name: str) -> float:
        return median([s[name] for s in self.steps if name in s])

    def ours_peak(self) -> float:
        return max(r.peak_mb for runs in self.ours_runs for r in runs)

    def bare_peak(self) -> float:
        return max(r.peak_mb for r in self.bare)


def scale_round(index: int, size: ScaleRow, folder: Path, env: dict[str, str], logs: Path, via: str) -> None:
    """Ours from a fresh .mlops/outputs (three commands, or one `mlops run --force`) and the bare
    compute, the order alternating between rounds."""
    def ours() -> None:
        for state in (folder / ".mlops", folder / "outputs"):
            shutil.rmtree(state, ignore_errors=True)
        if via == "run":
            run = checked(measure([*mlops_cmd(), "run", "--force"], folder, env, logs / f"{size.rows}-run-{index}"),
                          f"mlops run --force at {size.rows} rows")
            size.ours_runs.append([run])
            size.steps.append(step_seconds(run.stderr))
            return
        runs = [checked(measure([*mlops_cmd(), step], folder, env, logs / f"{size.rows}-{step}-{index}"),
                        f"mlops {step} at {size.rows} rows") for step in SCALE_STEPS]
        size.ours_runs.append(runs)
        size.steps.append({step: run.seconds for step, run in zip(SCALE_STEPS, runs, strict=True)})

    def bare() -> None:
        size.bare.append(checked(measure(naive_cmd(folder / "mlops.yaml", bare=True), folder, env,
                                         logs / f"{size.rows}-bare-{index}"), f"bare compute at {size.rows} rows"))

    for part in (ours, bare) if index % 2 == 0 else (bare, ours):
        part()
    say(f"scale {size.rows:>9,} rows, round {index + 1}: ours {size.ours()[-1]:.2f}s "
        f"({', '.join(f'{k} {v:.2f}' for k, v in size.steps[-1].items())}), bare {size.bare[-1].seconds:.2f}s")


def scale(sizes: list[int], repeats: list[int], env: dict[str, str], work: Path, via: str) -> list[ScaleRow]:
    results = []
    for rows, rounds in zip(sizes, repeats, strict=True):
        started = time.perf_counter()
        folder = work / f"scale-{rows}"
        prepare_size(rows, folder)
        say(f"scale {rows:>9,} rows: data written in {time.perf_counter() - started:.1f}s "
            f"({(folder / 'data.csv').stat().st_size / 1e6:.0f} MB)")
        size = ScaleRow(rows)
        for index in range(rounds):
            scale_round(index, size, folder, env, work / "logs", via)
        results.append(size)
    return results


def _growth(now: float, before: float, rows: float, rows_before: float) -> str:
    """The factor per 10x rows between two sizes (10.0 is linear)."""
    decades = math.log10(rows / rows_before)
    return f"{(now / before) ** (1 / decades):.1f}x" if decades > 0 and before > 0 else "-"


def print_scale(results: list[ScaleRow], via: str) -> list[dict[str, Any]]:
    how = ("`mlops run --force` (one process; it also writes the report and registers; step columns from its "
           "progress lines)" if via == "run" else "`mlops validate`, `mlops train`, `mlops evaluate` as three commands")
    print(f"\n### Scale: synthetic data, 20 feature columns + target; ours = {how}; "
          f"bare = pandas + scikit-learn compute of the same model; median of the rounds per size\n")
    print("| rows | rounds | ours s | validate | train | evaluate | bare s | ours ÷ bare | CPU ÷ bare | ours peak MB "
          "| bare peak MB "
          "| time growth per 10x rows | peak growth per 10x rows |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    table, previous = [], None
    for size in results:
        ours, bare = median(size.ours()), median([r.seconds for r in size.bare])
        cpu_ratio = median(size.ours_cpu()) / median([r.cpu for r in size.bare])
        entry = {"rows": size.rows, "ours": ours, "bare": bare, "ratio": ours / bare, "cpu_ratio": cpu_ratio,
                 "ours_peak_mb": size.ours_peak(),
                 "bare_peak_mb": size.bare_peak(), **{s: size.step_median(s) for s in SCALE_STEPS}}
        growth = ("-", "-") if previous is None else (
            _growth(ours, previous["ours"], size.rows, previous["rows"]),
            _growth(entry["ours_peak_mb"], previous["ours_peak_mb"], size.rows, previous["rows"]))
        print(f"| {size.rows:,} | {len(size.bare)} | {ours:.2f} | {entry['validate']:.2f} | {entry['train']:.2f} "
              f"| {entry['evaluate']:.2f} | {bare:.2f} | {entry['ratio']:.2f} | {cpu_ratio:.2f} "
              f"| {entry['ours_peak_mb']:.0f} | {entry['bare_peak_mb']:.0f} "
              f"| {growth[0]} | {growth[1]} |")
        table.append(entry)
        previous = entry
    largest = table[-1] if table else None
    if largest is not None:
        ok = largest["ratio"] <= GOALS["scale"]
        print(f"\nat {largest['rows']:,} rows: ours ÷ bare {largest['ratio']:.2f} (goal ≤ {GOALS['scale']} at 1M rows: "
              f"{_mark(ok) if largest['rows'] >= 1_000_000 else 'n/a below 1M rows'})")
    return table


# --- entry point --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="peer rounds (medians of this many; default 3)")
    parser.add_argument("--scale-repeats",
                        help="rounds per scale size: one number for all, or one per size (default 3, and 1 from 1M rows)")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts for the scale part")
    parser.add_argument("--scale-via", choices=("steps", "run"), default="run",
                        help="scale: one `mlops run --force` (default, what a user runs) or three step commands")
    parser.add_argument("--skip-peer", action="store_true", help="skip the peer comparison")
    parser.add_argument("--skip-scale", action="store_true", help="skip the scale part")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS for every child (default 1: stable on a shared machine; 0: unset)")
    parser.add_argument("--ref", help="benchmark this git ref (git archive) instead of the working tree")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data, MLflow stores)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    default = ",".join("1" if rows >= 1_000_000 else "3" for rows in sizes)
    repeats = [int(r) for r in (args.scale_repeats or default).split(",") if r.strip()]
    repeats = (repeats * len(sizes))[: len(sizes)] if len(repeats) == 1 else repeats
    if len(repeats) != len(sizes) or min(repeats) < 1:
        raise SystemExit(f"benchmark: --scale-repeats needs one number or one per size ({len(sizes)}), got {args.scale_repeats}")
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    started = time.perf_counter()
    try:
        src = snapshot(work / "src", args.ref)
        env = child_env(src, args.threads)
        warm_up(src, env, work)
        say(f"benchmark: code snapshot {src} ({args.ref or 'working tree'}), {os.cpu_count()} cores, "
            f"OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}, "
            f"load average {os.getloadavg()[0]:.1f}")
        figures: dict[str, Any] = {"load_average_start": os.getloadavg()}
        if not args.skip_peer:
            figures["peer"] = print_peer(peer(args.repeats, src, env, work))
        if not args.skip_scale:
            figures["scale"] = print_scale(scale(sizes, repeats, env, work, args.scale_via), args.scale_via)
        figures["load_average_end"] = os.getloadavg()
        print(f"\n({time.perf_counter() - started:.0f}s in all; OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}; "
              f"load average at start "
              f"{figures['load_average_start'][0]:.1f}, at end {figures['load_average_end'][0]:.1f} on {os.cpu_count()} cores)")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2, default=str))
    finally:
        if args.keep:
            say(f"benchmark: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
