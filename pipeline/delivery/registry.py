"""look at the model registry (MLOPS_MODEL_REGISTRY): list versions, show one, pull one, roll back.

`mlops registry list` prints every version with its aliases and lineage, newest first;
`mlops registry show REF` one version's metrics, lineage and requirements; `mlops registry pull
REF --output DIR` downloads its MLflow model directory (serve it with `mlops serve --model DIR`);
`mlops registry rollback [REF]` moves `champion` back to the champion before it (or to REF) by
compare-and-swap. REF is an alias (`champion`, `challenger`, `staging`), a version (`3` or `v3`)
or a digest. For people: all registry access is `pipeline.registry`; this only formats.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import PipelineError

if TYPE_CHECKING:  # top level stays standard-library only (the CLI imports this to build its parser)
    from pipeline.registry import Client, Version


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("list", "show", "pull", "rollback"))
    parser.add_argument("ref", nargs="?", help="alias, version (3 or v3) or digest (show, pull: default champion; "
                                               "rollback: default the previous champion)")
    parser.add_argument("--repository", default=os.environ.get("MLOPS_MODEL_REGISTRY"),
                        help="host[:port]/path (default: MLOPS_MODEL_REGISTRY)")
    parser.add_argument("--output", metavar="DIR", help="pull: where the model directory goes (default: ./model-v<N>)")


def main(args: argparse.Namespace) -> int:
    from pipeline import registry

    given = args.repository if args.repository and args.repository.strip() != "off" else None
    repo = registry.parse(given) if given else registry.configured()  # on GitHub: the derived default
    if repo is None:
        raise PipelineError(f"mlops registry: no repository: set {registry.ENV} or pass --repository host[:port]/path")
    client = registry.connect(repo)
    if args.action == "list":
        print(list_text(client))
        return 0
    if args.action == "rollback":
        print(rollback(client, args.ref))
        mirror_champion(args.config, client)
        return 0
    version = registry.describe(client, args.ref or registry.CHAMPION)
    if version is None:
        raise PipelineError(f"mlops registry: {client.repo}: no version {args.ref or registry.CHAMPION!r}")
    if args.action == "show":
        print(show_text(client, version))
        return 0
    dest = Path(args.output or f"model-v{version.number}")
    if dest.exists():
        raise PipelineError(f"mlops registry pull: {dest} exists; remove it or pass --output DIR")
    cache = Path(".mlops") / "registry"
    shutil.copytree(registry.pull(client, version.digest, cache), dest)
    print(f"pulled {client.repo} version {version.number} ({version.digest}) into {dest}")
    return 0


def _note(version: Version, key: str) -> str:
    from pipeline import registry

    return version.annotations.get(registry.ANNOTATION + key, "")


def _metrics(version: Version) -> dict[str, float]:
    try:
        found = json.loads(_note(version, "metrics") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def list_text(client: Client) -> str:
    """One line per version, newest first: number, short digest, aliases, git sha, metrics."""
    from pipeline import registry

    numbers = registry.version_numbers(client)
    if not numbers:
        return f"{client.repo}: no versions yet (`mlops promote` pushes one)"
    by_digest: dict[str, list[str]] = {}
    for alias, digest in registry.aliases(client).items():
        if digest:
            by_digest.setdefault(digest, []).append(alias)
    rows = [("version", "digest", "aliases", "git sha", "created", "metrics")]
    for number in reversed(numbers):
        version = registry.describe(client, f"v{number}")
        if version is None:
            continue
        metrics = " ".join(f"{k}={v:.4f}" for k, v in _metrics(version).items() if isinstance(v, (int, float)))
        rows.append((f"v{number}", version.digest[:19], ",".join(by_digest.get(version.digest, [])) or "-",
                     _note(version, "git-sha")[:12] or "-", _note(version, "created")[:19] or "-", metrics or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]
    return f"{client.repo}: {len(numbers)} version(s)\n" + "\n".join(line.rstrip() for line in lines)


def show_text(client: Client, version: Version) -> str:
    """Everything the artifact says about one version, one fact per line."""
    from pipeline import registry

    aliases = [alias for alias, digest in registry.aliases(client).items() if digest == version.digest]
    lines = [f"{client.repo} version {version.number}", f"  reference:     {client.repo.ref(version.digest)}",
             f"  aliases:       {', '.join(aliases) or '-'}"]
    for key in ("model", "estimator", "created", "git-sha", "mlflow-run-id", "data-hash", "config-hash", "signed"):
        lines.append(f"  {key + ':':<14} {_note(version, key) or '-'}")
    lines.append("  metrics:")
    lines += [f"    {name}: {value}" for name, value in _metrics(version).items()] or ["    -"]
    lines.append("  requirements:")
    lines += [f"    {line}" for line in _note(version, "requirements").splitlines() if line.strip()] or ["    -"]
    return "\n".join(lines)


def mirror_champion(config_path: str, client: Client) -> None:
    """With MLFLOW_TRACKING_URI set, MLflow's `champion` follows the registry's, as after a
    deploy: an alias left on the rolled-back version would name a model no longer champion."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        return
    from pipeline import registry, tracking
    from pipeline.config import load_config

    digest = registry.resolve(client, registry.CHAMPION)
    if digest is None:
        return
    version = tracking.follow_alias(load_config(config_path), registry.CHAMPION, digest)
    print("MLflow `champion` -> " + (f"version {version}" if version else "unchanged: no MLflow version has that digest"))


def rollback(client: Client, ref: str | None) -> str:
    """Move `champion` back to the previous champion (or to REF) by compare-and-swap; say what moved.
    The service itself is not redeployed: deploy the image of that version too."""
    from pipeline import registry

    current = registry.resolve(client, registry.CHAMPION)
    if current is None:
        raise PipelineError(f"mlops registry rollback: {client.repo} has no `champion` to roll back")
    target = registry.describe(client, ref) if ref else None
    if ref and target is None:
        raise PipelineError(f"mlops registry rollback: {client.repo}: no version {ref!r}")
    digest = target.digest if target else registry.previous_champion(client)
    if digest is None:
        raise PipelineError(f"mlops registry rollback: {client.repo}: no earlier champion recorded; "
                            "name the version to return to: mlops registry rollback N")
    if digest == current:
        return f"{client.repo}: `champion` is already version {registry.version_of(client, digest)} ({digest})"
    registry.move_alias(client, registry.CHAMPION, digest, current)
    before, after = registry.version_of(client, current), registry.version_of(client, digest)
    return (f"{client.repo}: `champion` moved back from version {before} ({current[:19]}) "
            f"to version {after} ({digest[:19]})\nredeploy that model's image to serve it: its tag is model-{after}")
