"""The durable model store (pipeline/registry.py) against Debian's real docker-registry on
loopback: push, list, show, pull; versions never reused; aliases moved by compare-and-swap, with
two racing promotions of which exactly one wins; a registry that is down or refuses the
credentials moves nothing; and the eviction scenario: local state and outputs deleted, the next
`mlops run` still compares against the champion, with its version and digest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import registry
from pipeline.cli import main as cli
from pipeline.config import load_config
from pipeline.errors import PipelineError
from pipeline.promote import publish_version
from tests.conftest import REPO, need_engine
from tests.engines import ENGINE_DIR, RUN_TAG, EngineUnavailable, _spawn, _wait, ensure_registry, free_port, registry_running
from tests.pipeline.test_runner import edit_config


@pytest.fixture(scope="module")
def address() -> str:
    try:
        return ensure_registry()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
        raise


@pytest.fixture()
def repo(address: str, monkeypatch) -> registry.Repository:
    """A repository of its own on the shared registry (unique per test and per run)."""
    value = f"{address}/mlops-test-{RUN_TAG}/{uuid.uuid4().hex[:8]}/model"
    monkeypatch.setenv(registry.ENV, value)
    return registry.parse(value)


def tiny_model(folder: Path, marker: str) -> Path:
    """Enough of an MLflow model directory for the store (it checks for MLmodel, never loads it)."""
    folder.mkdir(parents=True)
    (folder / "MLmodel").write_text(f"flavors: {{}}\nmarker: {marker}\n")
    (folder / "requirements.txt").write_text("scikit-learn==1.7.0\n")
    return folder


def mlops(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


# --- no engine needed ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["model", "ghcr.io", "ghcr.io/", "ghcr.io/You/Model", "team/model"])
def test_a_bad_repository_name_fails_naming_the_variable(value: str) -> None:
    with pytest.raises(PipelineError, match=r"MLOPS_MODEL_REGISTRY=.*expected host\[:port\]/repository"):
        registry.parse(value)


def test_loopback_speaks_http_anything_else_https() -> None:
    assert registry.parse("127.0.0.1:5000/team/model").insecure
    assert registry.parse("localhost:5000/team/model").insecure
    assert not registry.parse("ghcr.io/owner/repo-model").insecure


def test_a_registry_that_is_down_fails_promote_cleanly_and_moves_nothing(tmp_path: Path) -> None:
    """Checked before MLflow is touched: no version, no alias, no local store."""
    write_results(tmp_path)
    down = f"127.0.0.1:{free_port()}/team/model"
    result = mlops(tmp_path, "promote", env={registry.ENV: down})
    assert result.returncode == 1
    assert f"error: model registry {down} (MLOPS_MODEL_REGISTRY): unreachable: ConnectionError" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".mlops" / "mlflow.db").exists()


def test_a_registry_that_is_down_stops_a_deploy_before_the_rollout(tmp_path: Path) -> None:
    write_results(tmp_path)
    down = f"127.0.0.1:{free_port()}/team/model"
    result = mlops(tmp_path, "deploy", "--target", "swarm", "--env", "staging", "--image", "127.0.0.1:1/none:x",
                   "--name", f"never-{RUN_TAG}", "--model-digest", "sha256:" + "0" * 64, env={registry.ENV: down})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: model registry {down} (MLOPS_MODEL_REGISTRY): unreachable" in result.stderr
    assert "docker stack deploy" not in result.stderr


def write_results(root: Path) -> None:
    """A workspace whose train and evaluate results say: passed (promote reads nothing else first)."""
    shutil.copy(REPO / "mlops.yaml", root / "mlops.yaml")
    shutil.copytree(REPO / "data", root / "data")
    outputs = root / "outputs"
    tiny_model(outputs / "model", "m")
    train = {"run_id": "r1", "model_uri": "models:/m-1", "metrics": {"f1": 0.9}, "params": {}, "git_sha": "abc",
             "data_hash": "d", "config_hash": "c", "fit_seconds": 1.0, "model_dir": str(outputs / "model"),
             "tracking_uri": "sqlite:///x"}
    evaluate = {"passed": True, "failures": [], "run_id": "r1", "metrics": {"f1": 0.9}, "champion": {"passed": True}}
    (outputs / "train.json").write_text(json.dumps(train))
    (outputs / "evaluate.json").write_text(json.dumps(evaluate))


# --- against the real registry ------------------------------------------------------------------------

@pytest.mark.engine
def test_push_list_show_pull(repo: registry.Repository, tmp_path: Path, capsys, monkeypatch) -> None:
    client = registry.connect(repo)
    first = registry.push(client, tiny_model(tmp_path / "a" / "model", "a"), {"git-sha": "1111111aaaa", "metrics": {"f1": 0.91}})
    second = registry.push(client, tiny_model(tmp_path / "b" / "model", "b"), {"git-sha": "2222222bbbb", "metrics": {"f1": 0.93}})
    assert (first.number, second.number) == (1, 2) and first.digest != second.digest
    registry.move_alias(client, registry.CHAMPION, first.digest, expected=None)
    registry.move_alias(client, registry.CHALLENGER, second.digest, expected=None)

    assert cli(["registry", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0] == f"{repo}: 2 version(s)"
    assert listing[1].split() == ["version", "digest", "aliases", "git", "sha", "created", "metrics"]
    assert listing[2].split()[:4] == ["v2", second.digest[:19], "challenger", "2222222bbbb"]
    assert listing[2].endswith("f1=0.9300")
    assert listing[3].split()[:4] == ["v1", first.digest[:19], "champion", "1111111aaaa"]

    assert cli(["registry", "show"]) == 0  # default: champion
    shown = capsys.readouterr().out
    assert shown.startswith(f"{repo} version 1\n  reference:     {repo}@{first.digest}\n  aliases:       champion\n")
    assert "  metrics:\n    f1: 0.91\n" in shown

    monkeypatch.chdir(tmp_path)
    assert cli(["registry", "pull", "v2", "--output", "pulled"]) == 0
    assert capsys.readouterr().out.strip() == f"pulled {repo} version 2 ({second.digest}) into pulled"
    assert (tmp_path / "pulled" / "MLmodel").read_text() == (tmp_path / "b" / "model" / "MLmodel").read_text()
    assert cli(["registry", "show", "7"]) == 1
    assert f"{repo}: no version '7'" in capsys.readouterr().err


@pytest.mark.engine
def test_version_numbers_come_from_the_registry_and_are_never_reused(repo: registry.Repository, tmp_path: Path) -> None:
    numbers = [registry.push(registry.connect(repo), tiny_model(tmp_path / str(i) / "model", str(i)), {}).number
               for i in range(3)]  # a fresh client each time: nothing is remembered locally
    assert numbers == [1, 2, 3]
    assert registry.version_numbers(registry.connect(repo)) == [1, 2, 3]


@pytest.mark.engine
def test_an_alias_that_moved_is_not_moved_and_the_error_names_what_was_found(repo: registry.Repository, tmp_path: Path) -> None:
    client = registry.connect(repo)
    a = registry.push(client, tiny_model(tmp_path / "a" / "model", "a"), {})
    b = registry.push(client, tiny_model(tmp_path / "b" / "model", "b"), {})
    registry.move_alias(client, registry.CHAMPION, a.digest, expected=None)
    with pytest.raises(PipelineError, match=f"`champion` moved: expected no alias, found {a.digest}"):
        registry.move_alias(client, registry.CHAMPION, b.digest, expected=None)
    assert registry.resolve(client, registry.CHAMPION) == a.digest
    registry.move_alias(client, registry.CHAMPION, b.digest, expected=a.digest)
    assert registry.resolve(client, registry.CHAMPION) == b.digest
    assert registry.resolve(client, "v1") == a.digest  # versions stay where they are


@pytest.mark.engine
def test_two_racing_promotions_exactly_one_wins(repo: registry.Repository, tmp_path: Path) -> None:
    """Both evaluated against no champion and promote at the same moment: one moves `challenger`
    and `champion`; the other fails naming the winner's digest, and moves neither."""
    start = threading.Barrier(2)
    outcome: dict[str, object] = {}

    def promote(name: str) -> None:
        config = load_config(REPO / "mlops.yaml").model_copy(update={"root": tmp_path / name})
        tiny_model(tmp_path / name / "outputs" / "model", name)
        # train.json's absolute path may name another job's workspace: promote pushes its own outputs/model
        info = {"run_id": f"run-{name}", "model_dir": "/elsewhere/outputs/model", "metrics": {"f1": 0.9}}
        client = registry.connect(repo)
        start.wait()
        try:
            outcome[name] = publish_version(client, config, info, {"passed": True, "champion_digest": None}, False)
        except PipelineError as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=promote, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    won = [name for name, result in outcome.items() if isinstance(result, dict)]
    lost = [name for name, result in outcome.items() if isinstance(result, PipelineError)]
    assert len(won) == 1 and len(lost) == 1, outcome
    winner = outcome[won[0]]
    assert isinstance(winner, dict)
    client = registry.connect(repo)
    assert registry.resolve(client, registry.CHAMPION) == winner["model_digest"]
    assert registry.resolve(client, registry.CHALLENGER) == winner["model_digest"]
    assert f"moved: expected no alias, found {winner['model_digest']}" in str(outcome[lost[0]])
    assert registry.version_numbers(client) == [1, 2]  # both versions kept, under distinct numbers


@pytest.fixture()
def guarded(tmp_path_factory) -> str:
    """A second registry that wants a password (htpasswd, user `ci` / `right`); stopped after."""
    binary = shutil.which("docker-registry") or shutil.which("registry")
    need_engine(binary is not None, "docker-registry not installed (apt-get install docker-registry)")
    state = tmp_path_factory.mktemp("guarded")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # the standard library's bcrypt (Python <= 3.12), for the htpasswd file
        except ImportError:
            need_engine(False, "no crypt module to write a bcrypt htpasswd file (Python 3.13+)")
        (state / "htpasswd").write_text(f"ci:{crypt.crypt('right', crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    addr = f"127.0.0.1:{free_port()}"
    (state / "config.yml").write_text(
        f"version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {state / 'data'}}}}}\n"
        f"http: {{addr: '{addr}'}}\nauth: {{htpasswd: {{realm: test, path: {state / 'htpasswd'}}}}}\n")
    proc = _spawn([str(binary), "serve", str(state / "config.yml")], ENGINE_DIR / f"guarded-{addr}.log")
    try:
        _wait(lambda: registry_running(addr) or _answers_401(addr), 30, "guarded docker-registry")
        yield addr
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _answers_401(addr: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"http://{addr}/v2/", timeout=2)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
    return True


@pytest.mark.engine
def test_wrong_credentials_fail_cleanly_right_ones_work(guarded: str, tmp_path: Path, monkeypatch) -> None:
    write_results(tmp_path)
    target = f"{guarded}/team/model"
    wrong = {registry.ENV: target, f"{registry.ENV}_USERNAME": "ci", f"{registry.ENV}_PASSWORD": "wrong"}
    result = mlops(tmp_path, "promote", env=wrong)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: model registry {target} (MLOPS_MODEL_REGISTRY): credentials refused: HTTP 401" in result.stderr
    assert not (tmp_path / ".mlops" / "mlflow.db").exists()  # nothing registered, no alias moved anywhere

    monkeypatch.setenv(f"{registry.ENV}_USERNAME", "ci")
    monkeypatch.setenv(f"{registry.ENV}_PASSWORD", "right")
    client = registry.connect(registry.parse(target))
    pushed = registry.push(client, tiny_model(tmp_path / "m" / "model", "m"), {})
    registry.move_alias(client, registry.CHAMPION, pushed.digest, expected=None)
    assert registry.aliases(client)[registry.CHAMPION] == pushed.digest


@pytest.mark.engine
def test_eviction_the_champion_survives_in_the_registry(repo: registry.Repository, repo_copy: Path) -> None:
    """`mlops run && mlops promote`, then `.mlops/` and `outputs/` deleted (a fresh runner, an
    evicted cache): the next `mlops run` compares against the registry's champion and says which."""
    env = {registry.ENV: str(repo)}
    first = mlops(repo_copy, "run", env=env)
    assert first.returncode == 0, first.stderr
    promoted = mlops(repo_copy, "promote", env=env)
    assert promoted.returncode == 0, promoted.stderr
    result = json.loads((repo_copy / "outputs" / "promote.json").read_text())
    assert result["registry"] == str(repo) and result["registry_version"] == 1 and result["moved"]
    digest = result["model_digest"]
    assert registry.resolve(registry.connect(repo), registry.CHAMPION) == digest
    assert f"promote: {repo} version 1 ({digest}) is `challenger` and `champion`" in promoted.stderr

    shutil.rmtree(repo_copy / ".mlops")
    shutil.rmtree(repo_copy / "outputs")
    again = mlops(repo_copy, "run", env=env)
    assert again.returncode == 0, again.stderr
    evaluation = json.loads((repo_copy / "outputs" / "evaluate.json").read_text())
    assert evaluation["champion_digest"] == digest and evaluation["champion_version"] == "1"
    assert evaluation["champion"]["source"] == f"{repo}@{digest} (version 1)"
    report = (repo_copy / "outputs" / "report.md").read_text()
    assert f"champion from `{repo}@{digest} (version 1)`" in report

    # promote again: version 2 (the local MLflow restarted at 1; the registry did not), and the
    # champion moved from the digest evaluate compared against
    second = mlops(repo_copy, "promote", env=env)
    assert second.returncode == 0, second.stderr
    result = json.loads((repo_copy / "outputs" / "promote.json").read_text())
    assert (result["version"], result["registry_version"]) == ("1", 2)
    assert registry.resolve(registry.connect(repo), registry.CHAMPION) == result["model_digest"]
    twice = mlops(repo_copy, "promote", env=env)  # the same run promoted again: no new version
    assert twice.returncode == 0, twice.stderr
    assert json.loads((repo_copy / "outputs" / "promote.json").read_text())["registry_version"] == 2
    assert registry.version_numbers(registry.connect(repo)) == [1, 2]

    # the champion moved, so the cache must not call evaluate's old verdict current
    warm = mlops(repo_copy, "run", env=env)
    assert warm.returncode == 0, warm.stderr
    assert "evaluate  running" in warm.stderr
    assert json.loads((repo_copy / "outputs" / "evaluate.json").read_text())["champion_version"] == "2"


@pytest.fixture()
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server on loopback (sqlite store), stopped after the test."""
    import os
    import signal

    from tests.engines import start_mlflow_server

    try:
        proc, url = start_mlflow_server(tmp_path / "mlflow-server")
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
        raise
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.mark.engine
def test_without_a_deploy_target_mlflow_gets_the_same_versions_and_aliases(repo: registry.Repository, repo_copy: Path,
                                                                           mlflow_server: str) -> None:
    """Issue 9: with MLFLOW_TRACKING_URI set and no deploy target, promote moves `champion` in the
    model registry directly, and MLflow's registry (a real server) mirrors it: the same version,
    tagged with the registry's version number and digest, behind `challenger` and `champion`."""
    from mlflow import MlflowClient

    env = {registry.ENV: str(repo), "MLFLOW_TRACKING_URI": mlflow_server}
    for args in (("run",), ("promote",)):
        done = mlops(repo_copy, *args, env=env)
        assert done.returncode == 0, done.stderr
    result = json.loads((repo_copy / "outputs" / "promote.json").read_text())
    assert result["moved"] and result["registry_version"] == 1
    digest = result["model_digest"]
    assert registry.resolve(registry.connect(repo), registry.CHAMPION) == digest
    assert f"promote: {result['model']} version {result['version']} is `challenger`; champion -> version " \
           f"{result['version']}" in done.stderr

    client = MlflowClient(tracking_uri=mlflow_server)
    for alias in ("challenger", "champion"):
        version = client.get_model_version_by_alias(result["model"], alias)
        assert version.version == result["version"], alias
        assert version.tags["registry_version"] == "1" and version.tags["model_digest"] == digest, alias
    assert client.get_model_version_by_alias(result["model"], "champion").tags["validation_status"] == "passed"
    assert not (repo_copy / ".mlops" / "mlflow.db").exists()  # the server holds it, not a local store

    # a second champion, then `mlops registry rollback`: MLflow's `champion` goes back with it
    edit_config(repo_copy, lambda raw: raw["train"]["params"].update(n_estimators=150))
    for args in (("run",), ("promote",)):
        done = mlops(repo_copy, *args, env=env)
        assert done.returncode == 0, done.stderr
    second = json.loads((repo_copy / "outputs" / "promote.json").read_text())
    assert client.get_model_version_by_alias(result["model"], "champion").version == second["version"]
    done = mlops(repo_copy, "registry", "rollback", env=env)
    assert done.returncode == 0, done.stderr
    assert registry.resolve(registry.connect(repo), registry.CHAMPION) == digest
    assert client.get_model_version_by_alias(result["model"], "champion").version == result["version"]


def key_pair(folder: Path) -> tuple[Path, Path]:
    """An elliptic-curve key pair as PEM files (what `openssl ecparam -name prime256v1` makes)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "key.pem", folder / "pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.mark.engine
def test_signed_models_verify_and_tampered_or_unsigned_ones_are_refused(repo: registry.Repository, tmp_path: Path,
                                                                         monkeypatch, capsys) -> None:
    from pipeline import signing
    from pipeline.promote import push_signed

    private, public = key_pair(tmp_path)
    client = registry.connect(repo)
    monkeypatch.setenv(signing.KEY_ENV, str(private))
    good = push_signed(client, tiny_model(tmp_path / "a" / "model", "a"), {})
    assert good.annotations["dev.mlops.signed"] == "true"
    signature = tmp_path / "b.sig"
    signing.sign(tiny_model(tmp_path / "b" / "model", "b"), signature)
    (tmp_path / "b" / "model" / "MLmodel").write_text("flavors: {}\nmarker: swapped after signing\n")
    tampered = registry.push(client, tmp_path / "b" / "model", {}, signature)
    monkeypatch.delenv(signing.KEY_ENV)
    unsigned = push_signed(client, tiny_model(tmp_path / "c" / "model", "c"), {})
    assert unsigned.annotations["dev.mlops.signed"] == "false"

    cache = tmp_path / "cache"
    assert (registry.pull(client, unsigned.digest, cache) / "MLmodel").is_file()  # no public key: nothing checked
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(public))
    assert (registry.pull(client, good.digest, cache) / "MLmodel").read_text().endswith("marker: a\n")
    with pytest.raises(PipelineError, match=f"{repo}@{tampered.digest}: refused: its signature does not verify"):
        registry.pull(client, tampered.digest, cache)
    assert not (cache / tampered.digest.replace(":", "-")).exists()
    with pytest.raises(PipelineError, match=f"{repo}@{unsigned.digest}: refused: unsigned"):
        registry.pull(client, unsigned.digest, cache)  # even from the cache it was pulled into before
    (cache / good.digest.replace(":", "-") / "MLmodel").write_text("tampered in the local cache\n")
    with pytest.raises(PipelineError, match="refused: its signature does not verify"):
        registry.pull(client, good.digest, cache)

    monkeypatch.chdir(tmp_path)
    assert cli(["registry", "pull", "2", "--output", "pulled"]) == 1
    assert "refused: its signature does not verify" in capsys.readouterr().err
    assert not (tmp_path / "pulled").exists()


# --- where the store is, which signer and verifier (no engine needed) ---------------------------------

def test_on_github_the_registry_defaults_to_one_derived_from_the_repository(monkeypatch) -> None:
    monkeypatch.delenv(registry.ENV, raising=False)
    monkeypatch.setenv("GITHUB_REPOSITORY", "Acme-Labs/Churn.Model")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert str(registry.configured()) == "ghcr.io/acme-labs/churn.model/model"
    monkeypatch.setenv(registry.ENV, "")  # the workflow's `${{ vars.MLOPS_MODEL_REGISTRY }}` when unset
    assert str(registry.configured()) == "ghcr.io/acme-labs/churn.model/model"
    monkeypatch.setenv(registry.ENV, "127.0.0.1:5000/team/model")  # an explicit value wins
    assert str(registry.configured()) == "127.0.0.1:5000/team/model"
    monkeypatch.setenv(registry.ENV, "off")
    assert registry.configured() is None
    monkeypatch.delenv(registry.ENV)
    monkeypatch.delenv("GITHUB_ACTIONS")  # a laptop with a stray GITHUB_REPOSITORY: no store
    assert registry.configured() is None


def test_the_signer_and_verifier_are_chosen_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    from pipeline import signing

    private, public = key_pair(tmp_path)
    for name in (signing.KEY_ENV, signing.PUBLIC_KEY_ENV, signing.IDENTITY_ENV, signing.OIDC_ENV, "GITHUB_ACTIONS"):
        monkeypatch.delenv(name, raising=False)
    assert (signing.signer_mode(), signing.verifier_mode(), signing.required()) == (None, None, False)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert signing.signer_mode() is None  # on GitHub without `id-token: write`: unsigned, and said so
    monkeypatch.setenv(signing.OIDC_ENV, "https://token.example/")
    assert signing.signer_mode() == "keyless"
    monkeypatch.setenv(signing.KEY_ENV, str(private))
    assert signing.signer_mode() == "key"  # a key named in the environment wins
    monkeypatch.setenv(signing.IDENTITY_ENV, "https://github.com/o/r/.github/workflows/main.yml@refs/heads/main")
    assert signing.verifier_mode() == "identity" and signing.required()
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(public))
    assert signing.verifier_mode() == "key"
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(PipelineError, match=r"MLOPS_MODEL_SIGNING_PUBLIC_KEY=.*missing\.pem: no such key file"):
        signing.verifier_mode()


MERGE_RUN = {"GITHUB_ACTIONS": "true", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/churn",
             "GITHUB_REF": "refs/heads/main", "GITHUB_WORKFLOW_REF": "acme/churn/.github/workflows/main.yml@refs/heads/main"}


def test_the_merge_workflow_on_github_verifies_with_its_own_identity(tmp_path: Path, monkeypatch) -> None:
    """Issue 9: on the merge path on GitHub a registry model must verify even with nothing configured:
    the identity main.yml signs with keyless is derived from the run's environment. Pull requests,
    other workflows, act (no GITHUB_WORKFLOW_REF) and a registry turned off derive nothing; an
    explicit identity or public key wins."""
    from pipeline import registry, signing

    for name in (signing.PUBLIC_KEY_ENV, signing.IDENTITY_ENV, signing.ISSUER_ENV, registry.ENV):
        monkeypatch.delenv(name, raising=False)
    for name, value in MERGE_RUN.items():
        monkeypatch.setenv(name, value)
    expected = "https://github.com/acme/churn/.github/workflows/main.yml@refs/heads/main"
    assert signing.github_identity() == expected
    assert (signing.verifier_mode(), signing.required()) == ("identity", True)
    with pytest.raises(PipelineError, match=r"refused: unsigned, and the merge workflow's identity "
                                            r"https://github\.com/acme/churn/\.github/workflows/main\.yml@refs/heads/main"):
        signing.verify(tiny_model(tmp_path / "model", "a"), None, "ghcr.io/acme/churn/model@sha256:0")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://ghe.example.com/")  # GitHub Enterprise Server
    assert signing.github_identity() == "https://ghe.example.com/acme/churn/.github/workflows/main.yml@refs/heads/main"
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")

    not_the_merge_path = {
        "GITHUB_REF": "refs/pull/7/merge",  # a pull request
        "GITHUB_WORKFLOW_REF": "acme/churn/.github/workflows/monitor.yml@refs/heads/main",  # another workflow
    }
    for name, value in not_the_merge_path.items():
        monkeypatch.setenv(name, value)
        assert signing.github_identity() is None and not signing.required(), name
        monkeypatch.setenv(name, MERGE_RUN[name])
    monkeypatch.delenv("GITHUB_WORKFLOW_REF")  # act sets none: its runs verify only with a key
    assert signing.github_identity() is None
    monkeypatch.setenv("GITHUB_WORKFLOW_REF", MERGE_RUN["GITHUB_WORKFLOW_REF"])
    monkeypatch.setenv(registry.ENV, "off")  # no registry: nothing was pushed or signed
    assert signing.github_identity() is None and not signing.required()
    monkeypatch.delenv(registry.ENV)
    monkeypatch.setenv("GITHUB_ACTIONS", "false")
    assert signing.github_identity() is None
    monkeypatch.setenv("GITHUB_ACTIONS", "true")

    monkeypatch.setenv(signing.IDENTITY_ENV, "https://github.com/acme/release/.github/workflows/sign.yml@refs/heads/main")
    assert signing.identity() == "https://github.com/acme/release/.github/workflows/sign.yml@refs/heads/main"
    _, public = key_pair(tmp_path)
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(public))
    assert signing.verifier_mode() == "key"


def test_an_identity_refuses_an_unsigned_model_naming_the_setting(tmp_path: Path, monkeypatch) -> None:
    from pipeline import signing

    monkeypatch.delenv(signing.PUBLIC_KEY_ENV, raising=False)
    monkeypatch.setenv(signing.IDENTITY_ENV, "https://github.com/o/r/.github/workflows/main.yml@refs/heads/main")
    with pytest.raises(PipelineError, match="m: refused: unsigned, and MLOPS_MODEL_SIGNING_IDENTITY requires a signature"):
        signing.verify(tiny_model(tmp_path / "model", "m"), None, "m")


def test_a_model_from_outside_the_registry_is_announced_as_unsigned_and_kept_out_of_a_verified_build(
        tmp_path: Path, monkeypatch) -> None:
    from pipeline import signing
    from pipeline.delivery.build import refuse_unverified
    from pipeline.delivery.serve import ResolvedModel, provenance_note

    local = ResolvedModel(tmp_path, str(tmp_path), "local")
    assert provenance_note(local) == f"{tmp_path} is not from the model registry: unsigned, not verified"
    refuse_unverified(local)  # no key configured: a local build goes ahead
    _, public = key_pair(tmp_path)
    monkeypatch.setenv(signing.PUBLIC_KEY_ENV, str(public))
    with pytest.raises(PipelineError, match="not from the model registry, so it cannot be verified"):
        refuse_unverified(local)


def test_deploy_with_a_verifier_but_no_model_digest_refuses_before_the_rollout(tmp_path: Path) -> None:
    from pipeline import signing

    write_results(tmp_path)
    _, public = key_pair(tmp_path)
    result = mlops(tmp_path, "deploy", "--target", "swarm", "--env", "staging", "--image", "127.0.0.1:1/none:x",
                   "--name", f"never-{RUN_TAG}", env={signing.PUBLIC_KEY_ENV: str(public), registry.ENV: "off"})
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "the model must be checked before the rollout: set MLOPS_MODEL_REGISTRY and pass --model-digest" in result.stderr


# --- aliases follow the deploy; rollback for people ------------------------------------------------------

def dead_kubeconfig(folder: Path) -> Path:
    """A kubeconfig whose API server does not answer: every rollout fails at `kubectl apply`."""
    path = folder / "kubeconfig"
    path.write_text(f"apiVersion: v1\nkind: Config\nclusters: [{{name: dead, cluster: {{server: 'https://127.0.0.1:{free_port()}'}}}}]\n"
                    "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: dead, user: u}}]\n"
                    "current-context: c\n")
    return path


@pytest.mark.engine
def test_a_failed_rollout_moves_no_alias(repo: registry.Repository, tmp_path: Path) -> None:
    """A real failed rollout (kubectl against an API server that does not answer), staging then
    production: `champion` stays on the model that is live, `staging` stays unset."""
    from tests.conftest import need_binary

    need_binary("kubectl")
    client = registry.connect(repo)
    live = registry.push(client, tiny_model(tmp_path / "a" / "model", "a"), {})
    new = registry.push(client, tiny_model(tmp_path / "b" / "model", "b"), {})
    registry.move_alias(client, registry.CHAMPION, live.digest, expected=None)
    registry.move_alias(client, registry.CHALLENGER, new.digest, expected=None)
    (tmp_path / "ws").mkdir()
    write_results(tmp_path / "ws")
    env = {registry.ENV: str(repo), "KUBECONFIG": str(dead_kubeconfig(tmp_path))}
    for where in ("staging", "production"):
        result = mlops(tmp_path / "ws", "deploy", "--target", "kubernetes", "--env", where, "--image", "127.0.0.1:1/x:y",
                       "--model-digest", new.digest, "--timeout", "5", env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"kubectl apply of overlay {where} failed" in result.stderr
        assert registry.aliases(client) == {registry.CHALLENGER: new.digest, registry.STAGING: None,
                                            registry.CHAMPION: live.digest}


@pytest.mark.engine
def test_registry_rollback_moves_champion_back_by_compare_and_swap(repo: registry.Repository, tmp_path: Path,
                                                                  capsys) -> None:
    client = registry.connect(repo)
    a, b, c = (registry.push(client, tiny_model(tmp_path / n / "model", n), {}) for n in "abc")
    assert cli(["registry", "rollback"]) == 1
    assert f"{repo} has no `champion` to roll back" in capsys.readouterr().err
    registry.move_alias(client, registry.CHAMPION, a.digest, expected=None)
    assert cli(["registry", "rollback"]) == 1
    assert "no earlier champion recorded; name the version to return to: mlops registry rollback N" in capsys.readouterr().err
    registry.move_alias(client, registry.CHAMPION, b.digest, expected=a.digest)
    registry.move_alias(client, registry.CHAMPION, c.digest, expected=b.digest)  # production went live with c

    assert cli(["registry", "rollback"]) == 0  # c misbehaves in production: back to the one before
    out = capsys.readouterr().out
    assert out.splitlines() == [f"{repo}: `champion` moved back from version 3 ({c.digest[:19]}) to version 2 ({b.digest[:19]})",
                                "redeploy that model's image to serve it: its tag is model-2"]
    assert registry.resolve(client, registry.CHAMPION) == b.digest
    assert cli(["registry", "rollback", "1"]) == 0
    assert registry.resolve(client, registry.CHAMPION) == a.digest
    assert cli(["registry", "rollback", "v1"]) == 0
    assert "`champion` is already version 1" in capsys.readouterr().out
    assert registry.version_numbers(client) == [1, 2, 3]  # versions never move


@pytest.mark.engine
def test_serve_build_and_deploy_verify_a_registry_model_and_refuse_a_tampered_one(repo: registry.Repository,
                                                                                  repo_copy: Path) -> None:
    """A model trained here and promoted signed (`--defer-champion`, as on a merge with a deploy
    target: `challenger` moves, `champion` does not): with the public key configured, serve and the
    image build take it from the registry verified (the build labels the image with its digest);
    a tampered copy is refused by serve, build and deploy with one line, before anything starts.
    The same model served from outputs/ (never promoted) serves, saying it is unsigned."""
    from pipeline import signing
    from tests.pipeline.serving.live import Process

    private, public = key_pair(repo_copy)
    assert mlops(repo_copy, "run").returncode == 0
    # the merge path with a deploy target: every gate passed, `challenger` moves, `champion` waits for production
    promoted = mlops(repo_copy, "promote", "--defer-champion", env={registry.ENV: str(repo), signing.KEY_ENV: str(private)})
    assert promoted.returncode == 0, promoted.stderr
    result = json.loads((repo_copy / "outputs" / "promote.json").read_text())
    assert result["deferred"] and not result["moved"] and result["signed"]
    assert "champion moves when production is live" in promoted.stderr
    good = result["model_digest"]
    client = registry.connect(repo)
    assert registry.aliases(client) == {registry.CHALLENGER: good, registry.STAGING: None, registry.CHAMPION: None}
    tampered_dir = repo_copy / "tampered" / "model"
    shutil.copytree(repo_copy / "outputs" / "model", tampered_dir)
    (tampered_dir / "requirements.txt").write_text("a-package-swapped-in-after-signing==1.0\n")
    registry.pull(client, good, repo_copy / "sigs")  # the signed artifact's signature, to re-use on the tampered copy
    tampered = registry.push(client, tampered_dir, {}, repo_copy / "sigs" / (good.replace(":", "-") + ".sig"))
    env = {registry.ENV: str(repo), signing.PUBLIC_KEY_ENV: str(public)}

    built = mlops(repo_copy, "build", "--model", "registry:challenger", "--context", str(repo_copy / "ctx"), env=env)
    assert built.returncode == 0, built.stderr
    assert f"label io.mlops.model.digest={good}" in built.stdout and "(registry, verified)" in built.stdout
    build = json.loads((repo_copy / "outputs" / "build.json").read_text())
    assert f"io.mlops.model.digest={good}" in build["labels"] and build["model_uri"] == f"{repo}@{good}"

    refusal = f"error: {repo}@{tampered.digest}: refused: its signature does not verify with {signing.PUBLIC_KEY_ENV}"
    for command in (["serve", "--model", f"registry:{tampered.digest}", "--port", str(free_port())],
                    ["build", "--model", "registry:2", "--context", str(repo_copy / "ctx2")],
                    ["deploy", "--target", "swarm", "--env", "staging", "--image", "127.0.0.1:1/x:y",
                     "--name", f"never-{RUN_TAG}", "--model-digest", tampered.digest]):
        result = mlops(repo_copy, *command, env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert refusal in result.stderr, (command, result.stderr)
        assert "docker stack deploy" not in result.stderr and not (repo_copy / "ctx2").exists()

    server = Process(["-m", "pipeline.cli", "serve", "--model", "outputs/model", "--port", "{port}"],
                     repo_copy / "serve.log", env=env, cwd=repo_copy).wait_ready(90)
    server.stop(30)
    assert "is not from the model registry: unsigned, not verified" in server.text()

    # MLflow's registry mirrors the OCI one: its version carries the registry version and digest,
    # and an alias that follows the deploy points at the version with that digest
    from pipeline import tracking

    config = load_config(repo_copy / "mlops.yaml")
    assert tracking.follow_alias(config, tracking.CHAMPION, good) == "1"
    assert tracking.alias_version(config, tracking.CHAMPION) == "1"
    assert tracking.follow_alias(config, "staging", tampered.digest) is None


@pytest.mark.engine
def test_swarm_nodes_get_the_model_registrys_login_for_an_image_on_its_host(guarded: str, monkeypatch) -> None:
    """`docker stack deploy --with-registry-auth` sends the client's login: with the registry's
    credentials set, a throwaway Docker config is logged in to the image's host (and removed)."""
    from pipeline.delivery.deploy import pull_login
    from tests.engines import ensure_docker

    try:
        ensure_docker()
    except EngineUnavailable as exc:
        need_engine(False, str(exc))
    monkeypatch.setenv(registry.ENV, f"{guarded}/team/model")
    with pull_login(f"{guarded}/team/server@sha256:{'0' * 64}") as login:
        assert login == {}  # no credentials: the client's own login, if any
    monkeypatch.setenv(f"{registry.ENV}_USERNAME", "ci")
    monkeypatch.setenv(f"{registry.ENV}_PASSWORD", "right")
    with pull_login("ghcr.io/elsewhere/server:1") as login:
        assert login == {}  # another host: not ours to log in to
    with pull_login(f"{guarded}/team/server:1") as login:
        folder = Path(login["DOCKER_CONFIG"])
        assert guarded in json.loads((folder / "config.json").read_text())["auths"]
    assert not folder.exists()
    monkeypatch.setenv(f"{registry.ENV}_PASSWORD", "wrong")
    with pytest.raises(PipelineError, match=f"docker login {guarded} .*failed"), pull_login(f"{guarded}/team/server:1"):
        pass


def test_mlops_registry_without_a_repository_says_how_to_name_one(capsys) -> None:
    assert cli(["registry", "list"]) == 1  # MLOPS_MODEL_REGISTRY=off (the tests' default)
    expected = "mlops registry: no repository: set MLOPS_MODEL_REGISTRY or pass --repository host[:port]/path"
    assert expected in capsys.readouterr().err
