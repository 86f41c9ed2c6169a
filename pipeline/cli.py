"""`mlops`: the only entry point. One subcommand per declared step (`pipeline.steps`), `run` for
the pull-request path, and the delivery commands (`serve`, `build`, `deploy`).

Heavy libraries (pandas, scikit-learn, MLflow) are imported inside the steps, so a warm
`mlops run` that only checks its cache stays fast. A PipelineError becomes one clean message on
stderr and the step's failure code; no traceback reaches the user. Under GitHub Actions the
typed results also become annotations, a job summary and step outputs (`pipeline.github`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from pipeline.errors import PipelineError

# Delivery subcommands: their parser and handler live in their own module (`add_arguments`,
# `main`); those modules import only the standard library at top level.
EXTERNAL_COMMANDS = {
    "build": "pipeline.delivery.build",
    "deploy": "pipeline.delivery.deploy",
    "registry": "pipeline.delivery.registry",
    "init": "pipeline.init",
    "serve": "pipeline.delivery.serve",
}
LOCKED = "locked"  # commands that write outputs/ or .mlops/ hold the workspace lock


def _step_handler(name: str) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        from pipeline import steps
        from pipeline.runner import run_one

        step = steps.get(name)
        options = {option.dest: getattr(args, option.dest) for option in step.options}
        try:
            code, result = run_one(_config(args), name, options)
        except PipelineError as exc:
            exc.exit_code = step.failure_code
            _publish(args, name, None, exc, 1, step.result_file, step.action_outputs)
            raise
        _publish(args, name, {name: result}, None, code, step.result_file, step.action_outputs)
        return code

    return handle


def _run(args: argparse.Namespace) -> int:
    from pipeline import steps
    from pipeline.runner import run_all

    report = steps.get("report")  # `run` exposes the report's outputs
    try:
        code, results = run_all(_config(args), force=args.force, champion=args.champion)
    except PipelineError as exc:
        _publish(args, "run", None, exc, 1, report.result_file, report.action_outputs)
        raise
    _publish(args, "run", results, None, code, report.result_file, report.action_outputs)
    return code


def _delivery_handler(name: str, module: Any) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        declared = getattr(module, "RESULT_FILE", ""), getattr(module, "ACTION_OUTPUTS", {})
        try:
            code = int(module.main(args) or 0)
        except PipelineError as exc:
            _publish(args, name, None, exc, 1, *declared)
            raise
        _publish(args, name, None, None, code, *declared)
        return code

    return handle


def _publish(args: argparse.Namespace, command: str, results: dict[str, Any] | None, error: PipelineError | None,
             code: int, result_file: str, action_outputs: dict[str, str]) -> None:
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from pipeline import github

        github.publish(command, args.config, results or {}, error, code, result_file or f"{command}.json", action_outputs)


def _config(args: argparse.Namespace) -> Any:
    from pipeline.config import load_config

    return load_config(args.config)


def build_parser() -> argparse.ArgumentParser:
    from pipeline.steps import STEPS

    parser = argparse.ArgumentParser(prog="mlops", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default=os.environ.get("MLOPS_CONFIG", "mlops.yaml"), help="path to mlops.yaml")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for step in STEPS:
        p = sub.add_parser(step.name, help=step.help)
        for option in step.options:
            if option.is_switch:
                p.add_argument(option.flag, action="store_true", help=option.help)
            else:
                p.add_argument(option.flag, metavar=option.metavar, help=option.help, required=option.required)
        p.set_defaults(handler=_step_handler(step.name), **{LOCKED: True})

    p = sub.add_parser("run", help="validate, train, evaluate, report, register `challenger` (cached per step)")
    p.add_argument("--force", action="store_true", help="ignore the step cache")
    p.add_argument("--champion", metavar="DIR", help="MLflow model directory of the champion")
    p.set_defaults(handler=_run, **{LOCKED: True})

    for name, module_name in EXTERNAL_COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(handler=_delivery_handler(name, module), **{LOCKED: False})
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] = args.handler
    if not getattr(args, LOCKED, False):
        return int(handler(args) or 0)
    from pathlib import Path

    from pipeline.files import workspace_lock

    with workspace_lock(Path(args.config).resolve().parent / ".mlops", args.command):
        return int(handler(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Parse, dispatch, and turn known failures into a message and an exit code."""
    if os.environ.get("GITHUB_ACTIONS") == "true":  # the job log shows the exact command
        import shlex

        print(f"$ mlops {shlex.join(sys.argv[1:] if argv is None else argv)}", flush=True)
    try:
        parser = build_parser()
    except Exception as exc:  # a broken module of ours: one line, not a traceback
        print(f"internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last line of defence: no traceback for users
        if os.environ.get("MLOPS_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (set MLOPS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


def console() -> None:
    """The `mlops` console script: `main`, then exit without tearing the interpreter down.

    Why: after a cold run, unloading scikit-learn, pandas and MLflow (finalizers, thread pools)
    took about 1 s here, a fifth of the run. Every file is written and closed by then (results
    atomically, MLflow's store per call); the streams and log handlers are flushed first.
    """
    import logging

    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
