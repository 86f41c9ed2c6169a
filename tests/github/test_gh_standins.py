"""The stand-ins keep the GitHub behaviour the workflows depend on (tests/github/stand-ins).

actions/cache (v5.0.3, and GitHub's documented cache restrictions): a cache belongs to the ref
that saved it; a run restores from its own ref, its base branch, then the default branch, never
from another pull request or a sibling branch; a key is immutable within its scope; restore-keys
match by prefix, newest first. actions/attest-build-provenance (v3.0.0's README): attestations
exist for public repositories, and for private ones only on GitHub Enterprise Cloud.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

STAND_INS = Path(__file__).resolve().parent / "stand-ins"
SPEC = importlib.util.spec_from_file_location("standin", STAND_INS / "standin.py")
standin = importlib.util.module_from_spec(SPEC)  # type: ignore[arg-type]
sys.modules[SPEC.name] = standin
SPEC.loader.exec_module(standin)  # type: ignore[union-attr]


@pytest.fixture()
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Switch the simulated run: `github(ref, base="", visibility="public")`; returns the outputs."""
    monkeypatch.setenv("STANDIN_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path / "ws"))
    (tmp_path / "ws").mkdir()

    def switch(ref: str, base: str = "", visibility: str = "public") -> Path:
        event = tmp_path / "event.json"
        event.write_text(json.dumps({"repository": {"default_branch": "main", "visibility": visibility,
                                                    "private": visibility != "public", "full_name": "acme/model"}}))
        outputs = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
        outputs.touch()
        monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
        monkeypatch.setenv("GITHUB_REF", ref)
        monkeypatch.setenv("GITHUB_BASE_REF", base)
        monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
        return outputs

    return switch


def save(tmp_path: Path, key: str, content: str) -> None:
    (tmp_path / "ws" / "data.txt").write_text(content)
    assert standin.cache_save("data.txt", key) == 0


def restore(tmp_path: Path, key: str, restore_keys: str = "") -> tuple[str, str | None]:
    (tmp_path / "ws" / "data.txt").unlink(missing_ok=True)
    assert standin.cache_restore("data.txt", key, restore_keys, False, False) == 0
    target = tmp_path / "ws" / "data.txt"
    return key, target.read_text() if target.exists() else None


def test_a_pull_request_reads_main_but_not_another_pull_request(tmp_path: Path, github) -> None:
    github("refs/heads/main")
    save(tmp_path, "pip-main", "from main")
    github("refs/pull/1/merge", base="main")
    save(tmp_path, "pip-pr1", "from pr 1")
    github("refs/pull/2/merge", base="main")
    assert restore(tmp_path, "pip-main")[1] == "from main"
    assert restore(tmp_path, "pip-pr1")[1] is None  # another pull request's scope
    github("refs/heads/main")
    assert restore(tmp_path, "pip-pr1")[1] is None  # main never reads a pull request's caches


def test_keys_are_immutable_within_a_scope_but_not_across(tmp_path: Path, github, capsys) -> None:
    github("refs/pull/1/merge", base="main")
    save(tmp_path, "k", "pr 1, first")
    save(tmp_path, "k", "pr 1, second")
    assert "Unable to reserve cache with key k" in capsys.readouterr().out
    assert restore(tmp_path, "k")[1] == "pr 1, first"
    github("refs/heads/main")
    save(tmp_path, "k", "main")  # the same key in main's scope is another cache
    assert restore(tmp_path, "k")[1] == "main"
    github("refs/pull/1/merge", base="main")
    assert restore(tmp_path, "k")[1] == "pr 1, first"  # own scope first


def test_restore_keys_match_by_prefix_newest_first_own_scope_first(tmp_path: Path, github) -> None:
    github("refs/heads/main")
    save(tmp_path, "stage-a", "main old")
    save(tmp_path, "stage-b", "main new")
    github("refs/pull/3/merge", base="main")
    assert restore(tmp_path, "stage-x", "stage-")[1] == "main new"
    save(tmp_path, "stage-c", "pr 3")
    assert restore(tmp_path, "stage-y", "stage-")[1] == "pr 3"


@pytest.mark.parametrize(("visibility", "enterprise", "code"),
                         [("public", "", 0), ("private", "", 1), ("internal", "", 1), ("private", "true", 0)])
def test_attestation_is_available_by_visibility(tmp_path: Path, github, monkeypatch, capsys, visibility: str,
                                                enterprise: str, code: int) -> None:
    github("refs/heads/main", visibility=visibility)
    monkeypatch.setenv("STANDIN_ENTERPRISE_CLOUD", enterprise)
    assert standin.attest("127.0.0.1:5000/acme/model", "sha256:" + "a" * 64, "true") == code
    if code:
        assert "Feature not available" in capsys.readouterr().out
