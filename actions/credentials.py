"""Put the deploy secrets where kubectl and ssh look; standard library only.

    python credentials.py     # KUBECONFIG_DATA, SSH_KEY, KNOWN_HOSTS from the environment

Used by actions/deploy before `mlops deploy`; the variables it exports (KUBECONFIG) go to
$GITHUB_ENV for the following steps.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def write_credentials(kubeconfig: str, ssh_key: str, known_hosts: str, temp: Path, home: Path) -> dict[str, str]:
    """Put the deploy secrets where kubectl and ssh look; return the variables to export.

    The kubeconfig goes to TEMP/kubeconfig (exported as KUBECONFIG); the SSH key (for a
    DOCKER_HOST=ssh://... swarm manager) to ~/.ssh/id_deploy with the known hosts appended and
    one `IdentityFile` line in ~/.ssh/config, written once. Files are created owner-only (0600,
    ~/.ssh 0700). Empty values write nothing.
    """
    exports: dict[str, str] = {}

    def private(path: Path, text: str, mode: str = "w") -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode == "a" else os.O_TRUNC), 0o600)
        with os.fdopen(fd, mode, encoding="utf-8") as handle:
            handle.write(text if text.endswith("\n") else text + "\n")
        path.chmod(0o600)

    if kubeconfig.strip():
        temp.mkdir(parents=True, exist_ok=True)
        private(temp / "kubeconfig", kubeconfig)
        exports["KUBECONFIG"] = str(temp / "kubeconfig")
    if ssh_key.strip():
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        ssh.chmod(0o700)
        private(ssh / "id_deploy", ssh_key)
        if known_hosts.strip():
            private(ssh / "known_hosts", known_hosts, "a")
        line = "IdentityFile ~/.ssh/id_deploy"
        config = ssh / "config"
        if line not in (config.read_text(encoding="utf-8") if config.is_file() else ""):
            private(config, f"Host *\n  {line}\n", "a")
    return exports


def main() -> int:
    exports = write_credentials(os.environ.get("KUBECONFIG_DATA", ""), os.environ.get("SSH_KEY", ""),
                                os.environ.get("KNOWN_HOSTS", ""), Path(os.environ.get("RUNNER_TEMP", "/tmp")), Path.home())
    target = os.environ.get("GITHUB_ENV")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write("".join(f"{name}={value}\n" for name, value in exports.items()))
    written = [*exports, *(["SSH key"] if os.environ.get("SSH_KEY", "").strip() else [])]
    print(f"deploy credentials written: {', '.join(written) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
