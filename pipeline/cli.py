"""`mlops`: the only entry point. One subcommand per step, plus `run` for the pull-request path.

Heavy libraries (pandas, scikit-learn, MLflow) are imported inside the handlers, so a warm
`mlops run` that only checks its cache stays fast. Any PipelineError becomes one clean message
on stderr and exit code 1; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

from pipeline.errors import PipelineError

# Subcommands whose parser and handler live in their own module (`add_arguments`, `main`).
# Those modules import only the standard library at top level.
EXTERNAL_COMMANDS = {
    "build": "pipeline.build",
    "deploy": "pipeline.deploy",
    "serve": "pipeline.serve",
    "drift": "pipeline.drift",
}


def _config(args: argparse.Namespace):
    from pipeline.config import load_config

    return load_config(args.config)


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline import steps

    return steps.run_validate(_config(args), data=Path(args.data) if args.data else None)


def _cmd_train(args: argparse.Namespace) -> int:
    from pipeline import steps

    return steps.run_train(_config(args))


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pipeline import steps

    return steps.run_evaluate(_config(args), champion_path=args.champion)


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline import steps

    return steps.run_report(_config(args))


def _cmd_promote(args: argparse.Namespace) -> int:
    from pipeline import steps

    return steps.run_promote(_config(args), challenger_only=args.challenger_only)


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.runner import run_all

    return run_all(args.config, force=args.force, champion_path=args.champion)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.environ.get("MLOPS_CONFIG", "mlops.yaml"), help="path to mlops.yaml")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("validate", help="check the data contract, leakage and drift")
    p.add_argument("--data", help="check this file against the contract instead of the configured data")
    p.set_defaults(handler=_cmd_validate)

    sub.add_parser("train", help="train the model and log it to MLflow").set_defaults(handler=_cmd_train)

    p = sub.add_parser("evaluate", help="quality gates, behaviour, slices, fairness, champion comparison")
    p.add_argument("--champion", help="MLflow model directory of the champion (overrides evaluate.champion.path)")
    p.set_defaults(handler=_cmd_evaluate)

    sub.add_parser("report", help="write the Markdown peer-review report").set_defaults(handler=_cmd_report)

    p = sub.add_parser("promote", help="register the model as `challenger`; move `champion` if every gate passed")
    p.add_argument("--challenger-only", action="store_true", help="register and alias `challenger`, never `champion`")
    p.set_defaults(handler=_cmd_promote)

    p = sub.add_parser("run", help="validate, train, evaluate, report (cached per step)")
    p.add_argument("--force", action="store_true", help="ignore the step cache")
    p.add_argument("--champion", help="MLflow model directory of the champion")
    p.set_defaults(handler=_cmd_run)

    for name, module_name in EXTERNAL_COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(p)
        p.set_defaults(handler=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, dispatch, and turn known failures into a message and exit code 1."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return int(handler(args) or 0)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
        if os.environ.get("MLOPS_DEBUG"):
            traceback.print_exc()
        print(f"internal error: {type(exc).__name__}: {exc} (set MLOPS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
