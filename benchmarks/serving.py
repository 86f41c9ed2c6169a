"""Serving benchmark: our server (onnxruntime) against the in-process limit, against itself on
scikit-learn, against a baseline checkout (e.g. main before ONNX) and against `mlflow models serve
--env-manager local`, same model, same machine, same load generator (wrk), one run.

Measures: in-process cost of one row and rows/s of 1000-row batches on one thread (onnxruntime
and scikit-learn), the limit that sets for the server's two cores, and where one request's time
goes inside the app (parse, predict, monitoring, JSON); over HTTP, throughput and p50/p99 for
single-row requests at 1, 8 and 64 clients and rows/s for 1000-row batches; time from process
start to ready (median of cold starts); image sizes (ours from the engine, mlflow's estimated).
Ours starts as the image does (`python -m pipeline.serving`, 2 workers) on the model converted
as `mlops build` converts it. Servers run side by side and each case is measured for each in
turn, so load from other processes hits all alike. wrk's timeout is 30 s.
Prints the tables and each goal of issue 12 as PASS/FAIL. The prediction log (issue 10): ours
logs into a sqlite file as the image does; the same server with MLOPS_PREDICTION_LOG=off runs
beside it, single-row requests at 64 clients alternate between the two, and the ratio of their
throughputs is the log's cost (goal: at most 10%). `--log-only` measures just that. The log-off
server is also a column of the main table: the batch goal is judged on it, since the baseline
(main before ONNX) has no prediction log; the figure with the log is printed beside it.

Usage: python benchmarks/serving.py [--model DIR] [--duration 10] [--image REF] [--baseline-image REF]
                                    [--baseline REPO (a checkout with its own .venv)] [--log-only [--rounds 3]]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ROW = {"species": "Gentoo", "island": "Biscoe", "clutch_completion": "yes", "culmen_length_mm": 50.5,
       "culmen_depth_mm": 16.0, "flipper_length_mm": 228.0, "body_mass_g": 5800.0, "delta_15n": 8.3, "delta_13c": -26.1}
ISSUE_BASELINE = {"rps_64": 1519.0, "image_mb": 318.0}  # main before ONNX, as issue 12 measured it
MLFLOW_SLIM_BASE_MB = 131  # python:3.11-slim, uncompressed, as published on Docker Hub (cannot pull here)
WRK_TIMEOUT = "30s"
LOG_COST_GOAL = 0.10  # issue 10: the prediction log may cost at most 10% of throughput at 64 clients


def train_model(dest: Path) -> Path:
    """The template's own model on the bundled data, saved as `mlops train` saves it."""
    sys.path.insert(0, str(REPO))
    import mlflow.sklearn
    import pandas as pd
    import skops.io as sio
    from mlflow.models import infer_signature

    from model import build_model
    from pipeline.config import load_config
    from pipeline.train import model_spec

    config = load_config(REPO / "mlops.yaml")
    frame = pd.read_csv(REPO / config.data.path)
    x, y = frame[config.feature_columns], frame[config.data.target]
    fitted = build_model(model_spec(config)).fit(x, y)
    mlflow.sklearn.save_model(fitted, dest, serialization_format="skops",
                              skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(fitted)),
                              signature=infer_signature(x, fitted.predict(x)), input_example=x.head(3),
                              pip_requirements=["scikit-learn", "skops"])
    return dest


def convert(model: Path) -> tuple[Path, Any]:
    """What `mlops build` does: the model converted to ONNX and verified, beside it. Returns the
    contract file and the conversion result."""
    sys.path.insert(0, str(REPO))
    from pipeline.config import load_config
    from pipeline.delivery import onnx
    from pipeline.delivery.contract import from_config
    from pipeline.serving.contract import write

    contract = from_config(load_config(REPO / "mlops.yaml"))
    return write(contract, model.parent / "contract.json"), onnx.convert(model, contract)


def baseline_contract_file(checkout: Path, dest: Path) -> Path:
    """The contract as the baseline's own code writes it (older servers reject newer keys)."""
    code = ("import sys\nfrom pipeline.config import load_config\nfrom pipeline.delivery.contract import from_config\n"
            "from pipeline.serving.contract import write\nwrite(from_config(load_config('mlops.yaml')), sys.argv[1])")
    subprocess.run([str(checkout / ".venv/bin/python"), "-c", code, str(dest)], cwd=checkout, check=True)
    return dest


def per_call(fn: Any, seconds: float = 2.0) -> float:
    """Median seconds per call of `fn` over batches of calls for about `seconds`."""
    fn()
    samples = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        count, begun = 0, time.perf_counter()
        while count < 50 or time.perf_counter() - begun < 0.05:
            fn()
            count += 1
        samples.append((time.perf_counter() - begun) / count)
    return statistics.median(samples)


def in_process(model: Path, contract_path: Path) -> dict[str, float]:
    """One thread: seconds per single row and per 1000-row batch, onnxruntime and scikit-learn;
    and one single-row request through the app's own steps, without HTTP."""
    from pipeline.serving import app as app_mod
    from pipeline.serving import predictor
    from pipeline.serving.contract import load
    from pipeline.serving.settings import Settings

    contract = load(contract_path)
    onnx_model = predictor.load_onnx(model, contract, threads=1)
    assert onnx_model is not None, "no verified ONNX graph beside the model"
    sklearn_model = predictor.load_sklearn(model, contract)
    batch = [ROW] * 1000
    figures = {"onnx_row": per_call(lambda: onnx_model.predict_rows([ROW])),
               "sklearn_row": per_call(lambda: sklearn_model.predict_rows([ROW])),
               "onnx_batch": per_call(lambda: onnx_model.predict_rows(batch)),
               "sklearn_batch": per_call(lambda: sklearn_model.predict_rows(batch))}
    app = app_mod.create_app(Settings(model_dir=model), contract, onnx_model)
    state = app.state.serving
    body = json.dumps({"rows": [ROW]}).encode()
    rows = app_mod._parse(state, body)
    payload = app_mod._predict(state, rows)
    figures["parse"] = per_call(lambda: app_mod._parse(state, body))
    result = onnx_model.predict_rows(rows)
    figures["predict"] = per_call(lambda: onnx_model.predict_rows(rows))
    figures["monitor"] = per_call(lambda: (state.metrics.observe_inputs(rows, contract),
                                           state.metrics.observe_predictions(result.predictions, result.scores)))
    figures["respond"] = per_call(lambda: app_mod._json(200, payload))
    return figures


def wait_until(url: str, timeout: float, proc: subprocess.Popen) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready in {timeout}s")


def start(kind: str, model: Path, port: int, env: dict[str, str] | None = None, contract: Path | None = None,
          python: str = sys.executable, cwd: Path = REPO) -> tuple[subprocess.Popen, float]:
    """Start a server; return it and seconds from spawn to ready. `ours` starts as the image does."""
    environ = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    if kind != "mlflow" and "MLOPS_PREDICTION_LOG" not in environ:  # the log on, in a file of its own (as the image)
        environ["MLOPS_PREDICTION_LOG"] = str(log_dir() / "predictions.db")
    if kind == "mlflow":
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local", "-h", "127.0.0.1", "-p",
               str(port)]
        probe = f"http://127.0.0.1:{port}/ping"
    else:
        cmd = [python, "-m", "pipeline.serving"]
        environ.update(MLOPS_MODEL_DIR=str(model), MLOPS_CONTRACT=str(contract), MLOPS_HOST="127.0.0.1",
                       MLOPS_PORT=str(port), MLOPS_WORKERS="2")
        probe = f"http://127.0.0.1:{port}/ready"
    proc = subprocess.Popen(cmd, cwd=cwd, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    return proc, wait_until(probe, 120, proc)


def log_dir() -> Path:
    """A directory for one server's prediction log, removed when the benchmark exits: a run
    writes several GB of logs (they once filled this machine's disk)."""
    path = Path(tempfile.mkdtemp(prefix="predlog-bench-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def wait_for_log(log: Path, text: str, count: int, timeout: float = 120) -> None:
    """Until `text` appears `count` times in `log` (e.g. once per worker)."""
    deadline = time.monotonic() + timeout
    while log.read_text(errors="replace").count(text) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{log}: {text!r} not seen {count}x in {timeout}s")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wrk(url: str, body: dict, clients: int, duration: int) -> dict[str, Any]:
    """One wrk run posting `body`; requests/s, p50/p99 in ms, errors."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                     f"wrk.body = [==[{json.dumps(body)}]==]\n")
    out = subprocess.run(["wrk", f"-t{min(clients, 2)}", f"-c{clients}", f"-d{duration}s", "--timeout", WRK_TIMEOUT, "--latency",
                          "-s", script.name, url],
                         capture_output=True, text=True).stdout
    os.unlink(script.name)

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return float("nan")
        return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    timeouts = int(sock.group(4)) if sock else 0
    other = sum(map(int, sock.groups()[:3])) if sock else 0
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": latency("50"), "p99": latency("99"),
            "errors": f"{bad}+{other}+{timeouts}t" if bad or other or timeouts else "0"}


def ready_times(starters: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Seconds from spawn to ready, cold starts of each server in turn."""
    times: dict[str, list[float]] = {kind: [] for kind in starters}
    for _ in range(rounds):
        for kind, starter in starters.items():
            proc, ready = starter()
            stop(proc)
            times[kind].append(ready)
    return times


def session_cpu(session: int) -> float:
    """CPU seconds used so far by the processes of one session (a server and its workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session:  # fields after the name: state ppid pgrp session ... utime(11) stime(12)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def load(servers: dict[str, tuple[int, int]], duration: int, cases: list[tuple[str, int, int]]) -> dict[str, dict[str, dict]]:
    """Each case against each running server (kind -> port, session) in turn (interleaved): kind ->
    case -> wrk result, plus the server's CPU microseconds per request (what a busy machine's load
    does not change much, unlike requests/s)."""
    results: dict[str, dict[str, dict]] = {kind: {} for kind in servers}
    for name, rows, clients in cases:
        for kind, (port, session) in servers.items():
            mlflow = kind == "mlflow"
            body = {"dataframe_records": [ROW] * rows} if mlflow else {"rows": [ROW] * rows}
            url = f"http://127.0.0.1:{port}{'/invocations' if mlflow else '/predict'}"
            wrk(url, body, clients, 2)  # warm connections and caches
            cpu = session_cpu(session)
            results[kind][name] = wrk(url, body, clients, duration)
            done = results[kind][name]["rps"] * duration
            results[kind][name]["cpu_us"] = (session_cpu(session) - cpu) / done * 1e6 if done else float("nan")
    return results


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (fixed ones would collide with another benchmark on the machine)."""
    socks = [socket.socket() for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in socks]
    for sock in socks:
        sock.close()
    return ports


def log_cost(model: Path, contract: Path, duration: int, rounds: int) -> tuple[float, float, list[str]]:
    """Requests/s at 64 clients with the prediction log on (sqlite) and off, the two servers
    measured in alternation for `rounds` rounds; returns the medians and one line per round."""
    port_on, port_off = free_ports(2)
    on = start("ours", model, port_on, contract=contract)[0]
    off = start("ours", model, port_off, env={"MLOPS_PREDICTION_LOG": "off"}, contract=contract)[0]
    body, lines = {"rows": [ROW]}, []
    rps: dict[str, list[float]] = {"on": [], "off": []}
    try:
        for port in (port_on, port_off):
            wrk(f"http://127.0.0.1:{port}/predict", body, 64, 2)  # warm connections and caches
        for n in range(rounds):
            order = [("on", port_on), ("off", port_off)] if n % 2 == 0 else [("off", port_off), ("on", port_on)]
            for name, port in order:
                result = wrk(f"http://127.0.0.1:{port}/predict", body, 64, duration)
                rps[name].append(result["rps"])
                lines.append(f"round {n + 1}, log {name}: {result['rps']:,.0f} req/s "
                             f"(p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, errors {result['errors']})")
        with urllib.request.urlopen(f"http://127.0.0.1:{port_on}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        written = re.findall(r"^serving_prediction_log_rows_total (\S+)$", metrics, re.M)
        dropped = re.findall(r"^serving_prediction_log_dropped_total\{[^}]*\} (\S+)$", metrics, re.M)
        lines.append(f"log on: {float(written[0]) if written else 0:,.0f} rows written, "
                     f"{sum(map(float, dropped)):,.0f} dropped")
    finally:
        stop(on)
        stop(off)
    return statistics.median(rps["on"]), statistics.median(rps["off"]), lines


def print_log_cost(on: float, off: float, lines: list[str]) -> bool:
    print("\nPrediction log, 1 row at 64 clients, 2 workers each (wrk, alternating):")
    for line in lines:
        print(f"- {line}")
    cost = 1 - on / off if off else float("nan")
    met = cost == cost and cost <= LOG_COST_GOAL
    print(f"median: log on {on:,.0f} req/s, log off {off:,.0f} req/s: on/off = {on / off:.3f}")
    print(f"- {'PASS' if met else 'FAIL'}: the prediction log costs <= {LOG_COST_GOAL:.0%} of throughput: "
          f"{cost:.1%} (issue 10)")
    return met


def image_mb(image: str | None) -> float | None:
    if not image or not shutil.which("docker"):
        return None
    out = subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image], capture_output=True, text=True)
    return int(out.stdout) / 1e6 if out.returncode == 0 else None


def mlflow_image_estimate_mb(model: Path) -> tuple[float, str]:
    """`mlflow models build-docker` cannot pull its base here. Its generated Dockerfile is
    python:3.11-slim + apt nginx + `pip install mlflow==X` + the model's requirements: install
    exactly that into a fresh venv and add the base. A lower bound (no pip cache, no apt lists)."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(BIN / "mlflow"), "models", "generate-dockerfile", "-m", str(model), "-d", tmp, "--env-manager",
                        "local"],
                       capture_output=True, check=True)
        dockerfile = (Path(tmp) / "Dockerfile").read_text()
        assert f"pip install mlflow=={mlflow.__version__}" in dockerfile
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        requirements = (model / "requirements.txt").read_text().split()
        subprocess.run([str(venv / "bin/pip"), "install", "-q", f"mlflow=={mlflow.__version__}", *requirements],
                       check=True, capture_output=True)
        size = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file() and not f.is_symlink()) / 1e6
    nginx = 10  # nginx + its libraries from Debian (apt), approximately
    return (MLFLOW_SLIM_BASE_MB + nginx + size,
            f"python:3.11-slim {MLFLOW_SLIM_BASE_MB} + nginx ~{nginx} + mlflow venv {size:.0f} MB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--image", help="our serving image, for its size")
    parser.add_argument("--baseline-image", help="the baseline's serving image, for its size")
    parser.add_argument("--baseline", type=Path, help="a checkout (with .venv) whose server to compare, e.g. main")
    parser.add_argument("--skip-image-estimate", action="store_true", help="skip mlflow's image estimate (installs mlflow)")
    parser.add_argument("--ready-rounds", type=int, default=3, help="cold starts per server for the ready time")
    parser.add_argument("--log-only", action="store_true", help="only the prediction log's cost (log on vs off)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the log on/off comparison")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    model = args.model or train_model(Path(tempfile.mkdtemp()) / "model")
    contract, conversion = convert(model)
    print(f"conversion: {conversion.runtime} ({conversion.detail})")
    if args.log_only:
        print(f"load average at start {load_before:.2f} on {os.cpu_count()} cores")
        return 0 if print_log_cost(*log_cost(model, contract, args.duration, args.rounds)) else 1
    limit = in_process(model, contract)
    sklearn_model = shutil.copytree(model, model.parent / "sklearn-model", ignore=shutil.ignore_patterns("model.onnx*"))
    starters: dict[str, Any] = {
        "ours": lambda port=18301: start("ours", model, port, contract=contract),
        # the baseline's work: no prediction log (it has none; issue 12's goals predate the log)
        "ours, log off": lambda port=18305: start("ours", model, port, env={"MLOPS_PREDICTION_LOG": "off"},
                                                  contract=contract),
        "ours on scikit-learn": lambda port=18302: start("ours", sklearn_model, port, contract=contract),
        "mlflow": lambda port=18303: start("mlflow", sklearn_model, port),
    }
    if args.baseline:
        baseline_model = shutil.copytree(model, model.parent / "baseline-model", ignore=shutil.ignore_patterns("model.onnx*"))
        baseline_contract = baseline_contract_file(args.baseline, model.parent / "baseline-contract.json")
        starters["baseline"] = lambda port=18304: start("ours", baseline_model, port, contract=baseline_contract,
                                                        python=str(args.baseline / ".venv/bin/python"), cwd=args.baseline)
    ready = {kind: statistics.median(values) for kind, values in ready_times(starters, args.ready_rounds).items()}
    ports = {"ours": 18301, "ours on scikit-learn": 18302, "mlflow": 18303, "baseline": 18304, "ours, log off": 18305}
    started = [starter() for starter in starters.values()]
    cases = [("1 row, 1 client", 1, 1), ("1 row, 8 clients", 1, 8), ("1 row, 64 clients", 1, 64),
             ("1000 rows, 8 clients", 1000, 8)]
    try:
        servers = {kind: (ports[kind], proc.pid) for kind, (proc, _) in zip(starters, started, strict=True)}
        results = load(servers, args.duration, cases)
    finally:
        for proc, _ in started:
            stop(proc)
    report(args, load_before, limit, ready, results, cases, model)
    print_log_cost(*log_cost(model, contract, args.duration, args.rounds))
    return 0


def report(args: argparse.Namespace, load_before: float, limit: dict[str, float], ready: dict[str, float],
           results: dict[str, dict[str, dict]], cases: list[tuple[str, int, int]], model: Path) -> None:
    cores = 2  # the server's workers, one core each
    print(f"\nIn process, one thread ({os.cpu_count()} cores, load average at start {load_before:.2f}):")
    print("| | onnxruntime | scikit-learn | ratio |\n|---|---|---|---|")
    print(f"| one row (us) | {limit['onnx_row'] * 1e6:,.0f} | {limit['sklearn_row'] * 1e6:,.0f} | "
          f"{limit['sklearn_row'] / limit['onnx_row']:.1f}x |")
    print(f"| 1000-row batch (rows/s) | {1000 / limit['onnx_batch']:,.0f} | {1000 / limit['sklearn_batch']:,.0f} | "
          f"{limit['sklearn_batch'] / limit['onnx_batch']:.1f}x |")
    row_limit, batch_limit = cores / limit["onnx_row"], cores * 1000 / limit["onnx_batch"]
    inside = limit["parse"] + limit["predict"] + limit["monitor"] + limit["respond"]
    print(f"\nOne single-row request inside the app (us): parse {limit['parse'] * 1e6:.0f}, "
          f"predict {limit['predict'] * 1e6:.0f}, monitoring {limit['monitor'] * 1e6:.0f}, "
          f"JSON response {limit['respond'] * 1e6:.0f}: {inside * 1e6:.0f} in all")
    one = results["ours"]["1 row, 1 client"]["rps"]
    if one:
        print(f"Over HTTP, one client: {1e6 / one:.0f} us per request, so HTTP, uvicorn and the event loop take "
              f"{1e6 / one - inside * 1e6:.0f} us of it")
    kinds = list(results)
    print(f"\nOver HTTP (wrk, {args.duration}s per case, --timeout {WRK_TIMEOUT}; ours: 2 workers; mlflow: its defaults)\n")
    print("| case | " + " | ".join(f"{k} req/s (p50/p99 ms)" for k in kinds) + " | ours / limit |")
    print("|---|" + "---|" * (len(kinds) + 1))
    for name, rows, _ in cases:
        cells = []
        for kind in kinds:
            r = results[kind][name]
            errors = "" if r["errors"] == "0" else f" err {r['errors']}"
            cells.append(f"{r['rps'] * rows:,.0f} ({r['p50']:.1f}/{r['p99']:.1f}){errors}")
        share = results["ours"][name]["rps"] * rows / (batch_limit if rows > 1 else row_limit)
        print(f"| {name}{' (rows/s)' if rows > 1 else ''} | " + " | ".join(cells) + f" | {share:.0%} |")
    print("| ready after start (s, median) | " + " | ".join(f"{ready[k]:.2f}" for k in kinds) + " | |")
    print("\nServer CPU per request, all its processes (us; per 1000 rows for batches): less sensitive to a busy machine\n")
    print("| case | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
    for name, _, _ in cases:
        print(f"| {name} | " + " | ".join(f"{results[k][name]['cpu_us']:,.0f}" for k in kinds) + " |")
    print(f"\nIn-process limit for {cores} cores: {row_limit:,.0f} single-row predictions/s, "
          f"{batch_limit:,.0f} rows/s in batches")
    top, batch = "1 row, 64 clients", "1000 rows, 8 clients"
    ours = results["ours"]
    base_rps = results["baseline"][top]["rps"] if "baseline" in results else ISSUE_BASELINE["rps_64"]
    base_name = "the baseline" if "baseline" in results else "issue 12's 1,519"
    goals = [(f"64 clients >= 2x {base_name} req/s, or >= half the in-process limit",
              max(ours[top]["rps"] / base_rps / 2, ours[top]["rps"] / (row_limit / 2)), ">=", 1.0),
             ("ready after start <= 0.5 s", ready["ours"], "<=", 0.5)]
    if "baseline" in results:
        base_batch = results["baseline"][batch]["rps"]
        goals.append(("1000-row batches >= 3x the baseline's rows/s, ours without the prediction log (the "
                      "baseline's work)", results["ours, log off"][batch]["rps"] / base_batch, ">=", 3.0))
        print(f"1000-row batches with the prediction log (issue 10; the baseline has none): "
              f"{ours[batch]['rps'] / base_batch:.2f}x the baseline's rows/s; the log costs "
              f"{1 - ours[batch]['rps'] / results['ours, log off'][batch]['rps']:.0%} of them")
    size, base_size = image_mb(args.image), image_mb(args.baseline_image) or ISSUE_BASELINE["image_mb"]
    if size:
        print(f"Image: ours {size:.0f} MB; baseline {base_size:.0f} MB = {size / base_size:.2f}x")
        goals.append(("image <= 60% of the baseline's", size / base_size, "<=", 0.6))
    if not args.skip_image_estimate:
        estimate, how = mlflow_image_estimate_mb(model)
        print(f"mlflow build-docker estimated {estimate:.0f} MB ({how}; its base image is on Docker Hub)")
    print("\nGoals (issue 12):")
    for what, value, op, target in goals:
        met = value == value and (value >= target if op == ">=" else value <= target)
        print(f"- {'PASS' if met else 'FAIL'}: {what}: {value:.3f} (goal {op} {target:.3f})")
    if not size:
        print("- not checked: image size (pass --image REF)")
    if "baseline" in results:
        print(f"- (for reading a busy machine's run) CPU per request at 64 clients, baseline / ours: "
              f"{results['baseline'][top]['cpu_us'] / ours[top]['cpu_us']:.2f}x; per 1000-row batch: "
              f"{results['baseline'][batch]['cpu_us'] / ours[batch]['cpu_us']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
