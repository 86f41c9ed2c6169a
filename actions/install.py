"""Install the mlops package from an action's own checkout, once per job; standard library only.

    python install.py SOURCE [--extras serve]

Editable, so the package keeps finding the repository files it uses beside its code (infra/ for
`build` and `deploy`). Every composite action in actions/ calls this, then runs `mlops <step>`.
With RAY_ADDRESS set (the workflow passes `vars.RAY_ADDRESS` to the step that trains), the `ray`
extra comes too: the train step then runs on that Ray cluster and needs Ray Client.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

STAMP = "mlops-installed.txt"


def wanted_extras(extras: str, environ: dict[str, str] | os._Environ[str]) -> str:
    """`extras`, plus `ray` when RAY_ADDRESS names a cluster (empty means train locally)."""
    names = [name for name in extras.split(",") if name]
    if environ.get("RAY_ADDRESS", "").strip() and "ray" not in names:
        names.append("ray")
    return ",".join(names)


def install(source: str, extras: str) -> int:
    """pip install the package from the action's checkout, once per job (a stamp remembers).

    Editable, so the package keeps finding the repository files it uses beside its code
    (infra/ for `build` and `deploy`, the step code the cache keys hash). The checkout's
    requirements.txt lock, when present, pins every dependency (pip constraints).
    """
    root = Path(source).resolve()
    extras = wanted_extras(extras, os.environ)
    target = f"{root}[{extras}]" if extras else str(root)
    lock = root / "requirements.txt"
    constraints = ["--constraint", str(lock)] if lock.is_file() else []
    stamp = Path(os.environ.get("RUNNER_TEMP", "/tmp")) / STAMP
    done = stamp.read_text().splitlines() if stamp.is_file() else []
    if target in done:
        print(f"mlops already installed from {target}")
        return 0
    code = subprocess.call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                            *constraints, "--editable", target])
    if code == 0:
        with stamp.open("a") as handle:
            handle.write(target + "\n")
    else:
        print(f"::error title=mlops install::pip install {target} failed with exit code {code}")
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("source", help="the folder holding pyproject.toml")
    parser.add_argument("--extras", default="", help="extras such as `serve`")
    args = parser.parse_args(argv)
    return install(args.source, args.extras)


if __name__ == "__main__":
    sys.exit(main())
