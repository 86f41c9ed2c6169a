"""actions/install.py and actions/credentials.py: the two standard-library scripts the
composite actions run besides `mlops` itself."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"actions_{name}", REPO / "actions" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


install = script("install")
credentials = script("credentials")


def test_install_runs_once_per_job(tmp_path: Path, monkeypatch) -> None:
    """A second action in the same job finds the stamp and does not reinstall."""
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    (tmp_path / install.STAMP).write_text(f"{REPO}\n")
    assert install.main([str(REPO / "actions" / "validate" / ".." / "..")]) == 0


def test_a_ray_address_brings_the_ray_extra() -> None:
    """The merge workflow trains on the cluster `vars.RAY_ADDRESS` names: the install adds Ray (Client)."""
    assert install.wanted_extras("", {}) == ""
    assert install.wanted_extras("", {"RAY_ADDRESS": " "}) == ""
    assert install.wanted_extras("", {"RAY_ADDRESS": "ray://head:10001"}) == "ray"
    assert install.wanted_extras("serve", {"RAY_ADDRESS": "head:6379"}) == "serve,ray"
    assert install.wanted_extras("serve,ray", {"RAY_ADDRESS": "head:6379"}) == "serve,ray"


def test_deploy_credentials_are_written_owner_only_and_exported(tmp_path: Path, monkeypatch, capsys) -> None:
    """actions/deploy's credentials step (was duplicated shell in main.yml's two deploy jobs)."""
    home, temp, env_file = tmp_path / "home", tmp_path / "temp", tmp_path / "github_env"
    monkeypatch.setattr(Path, "home", lambda: home)
    monkeypatch.setenv("RUNNER_TEMP", str(temp))
    monkeypatch.setenv("GITHUB_ENV", str(env_file))
    monkeypatch.setenv("KUBECONFIG_DATA", "apiVersion: v1\nkind: Config")
    monkeypatch.setenv("SSH_KEY", "-----BEGIN KEY-----\nabc\n-----END KEY-----")
    monkeypatch.setenv("KNOWN_HOSTS", "manager ssh-ed25519 AAAA")
    for _ in range(2):  # idempotent: a second call (same job) adds no second IdentityFile line
        assert credentials.main() == 0
    assert (temp / "kubeconfig").read_text() == "apiVersion: v1\nkind: Config\n"
    assert f"KUBECONFIG={temp / 'kubeconfig'}\n" in env_file.read_text()
    ssh = home / ".ssh"
    assert (ssh / "id_deploy").read_text() == "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"
    assert "manager ssh-ed25519 AAAA\n" in (ssh / "known_hosts").read_text()
    assert (ssh / "config").read_text().count("IdentityFile ~/.ssh/id_deploy") == 1
    for path in (temp / "kubeconfig", ssh / "id_deploy", ssh / "known_hosts", ssh / "config"):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert ssh.stat().st_mode & 0o777 == 0o700
    assert "abc" not in capsys.readouterr().out


def test_no_deploy_credentials_write_nothing(tmp_path: Path) -> None:
    assert credentials.write_credentials("", " ", "hosts", tmp_path / "temp", tmp_path / "home") == {}
    assert not (tmp_path / "temp").exists() and not (tmp_path / "home").exists()
