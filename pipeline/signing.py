"""Signing promoted models and checking them where they are loaded back (the `model-signing`
package).

Which signer, from the environment (`signer_mode`): `MLOPS_MODEL_SIGNING_KEY` (an elliptic-curve
private key PEM) signs with that key, offline; else, on GitHub Actions in a job granted
`id-token: write` (ACTIONS_ID_TOKEN_REQUEST_URL is set), keyless with Sigstore and the job's OIDC
token (needs the network: it cannot run on an offline machine); else the model is pushed unsigned
and promote says so. The signature travels in the registry artifact beside the model.

Which verifier (`verifier_mode`): `MLOPS_MODEL_SIGNING_PUBLIC_KEY` (the key's public half), else
`MLOPS_MODEL_SIGNING_IDENTITY` (the signing workflow's identity, e.g.
`https://github.com/OWNER/REPO/.github/workflows/main.yml@refs/heads/main`, issuer
`MLOPS_MODEL_SIGNING_ISSUER`, default GitHub's), else, on the merge path on GitHub Actions (a run of
this repository's main.yml on a branch, with a model registry), the identity main.yml signs with
keyless there (`github_identity`). With any of them, every registry model is verified before it
is used (evaluate's champion, `mlops registry pull`, serve, build, deploy) and a tampered or
unsigned one is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import PipelineError

KEY_ENV = "MLOPS_MODEL_SIGNING_KEY"
PUBLIC_KEY_ENV = "MLOPS_MODEL_SIGNING_PUBLIC_KEY"
IDENTITY_ENV = "MLOPS_MODEL_SIGNING_IDENTITY"
ISSUER_ENV = "MLOPS_MODEL_SIGNING_ISSUER"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
OIDC_ENV = "ACTIONS_ID_TOKEN_REQUEST_URL"  # set by GitHub only in jobs granted `id-token: write`
MERGE_WORKFLOW = ".github/workflows/main.yml"  # the workflow that promotes (and signs) on GitHub
SIGNATURE_NAME = "model.sig"
SIGNATURE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


def _key(env: str) -> Path | None:
    value = os.environ.get(env, "").strip()
    if not value:
        return None
    if not Path(value).is_file():
        raise PipelineError(f"{env}={value}: no such key file")
    return Path(value)


def _library() -> None:
    try:
        import model_signing  # noqa: F401
    except ImportError as exc:
        raise PipelineError(f"signing needs the `sign` extra: pip install -e '.[sign]' ({exc})") from None


def signer_mode() -> str | None:
    """'key' (MLOPS_MODEL_SIGNING_KEY), 'keyless' (GitHub OIDC token available) or None (unsigned)."""
    if _key(KEY_ENV) is not None:
        return "key"
    if os.environ.get("GITHUB_ACTIONS") == "true" and os.environ.get(OIDC_ENV):
        return "keyless"
    return None


def github_identity() -> str | None:
    """The Sigstore identity main.yml signs with when this run is main.yml itself on GitHub Actions
    (GITHUB_WORKFLOW_REF names it) on a branch, with a model registry; else None.

    Keyless certificates name the workflow file and ref: GITHUB_SERVER_URL/GITHUB_REPOSITORY/
    .github/workflows/main.yml@GITHUB_REF. Pull requests and other workflows derive nothing (their
    ref or workflow differs), so they verify only with a key or identity set explicitly.
    """
    env = {name: os.environ.get(name, "").strip() for name in
           ("GITHUB_ACTIONS", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_REF", "GITHUB_WORKFLOW_REF")}
    repository, ref = env["GITHUB_REPOSITORY"], env["GITHUB_REF"]
    if env["GITHUB_ACTIONS"] != "true" or not env["GITHUB_SERVER_URL"] or not repository or not ref.startswith("refs/heads/"):
        return None
    if env["GITHUB_WORKFLOW_REF"] != f"{repository}/{MERGE_WORKFLOW}@{ref}":
        return None
    from pipeline import registry

    if registry.configured() is None:  # MLOPS_MODEL_REGISTRY=off: nothing is pushed, nothing signed
        return None
    return f"{env['GITHUB_SERVER_URL'].rstrip('/')}/{repository}/{MERGE_WORKFLOW}@{ref}"


def identity() -> str | None:
    """MLOPS_MODEL_SIGNING_IDENTITY when set, else the merge workflow's own (`github_identity`)."""
    return os.environ.get(IDENTITY_ENV, "").strip() or github_identity()


def verifier_mode() -> str | None:
    """'key' (MLOPS_MODEL_SIGNING_PUBLIC_KEY), 'identity' (MLOPS_MODEL_SIGNING_IDENTITY, or derived
    on the merge path on GitHub) or None."""
    if _key(PUBLIC_KEY_ENV) is not None:
        return "key"
    if identity() is not None:
        return "identity"
    return None


def sign(model_dir: Path, signature: Path) -> bool:
    """Sign model_dir into `signature` (the mode `signer_mode` picks); False when unsigned."""
    mode = signer_mode()
    if mode is None:
        return False
    _library()
    import model_signing.signing

    config = model_signing.signing.Config()
    try:
        if mode == "key":
            config.use_elliptic_key_signer(private_key=str(_key(KEY_ENV)))
        else:
            config.use_sigstore_signer(use_ambient_credentials=True)
        config.sign(model_dir, signature)
    except Exception as exc:  # the library raises many types; one line for the user
        how = f"{KEY_ENV}={_key(KEY_ENV)}" if mode == "key" else "Sigstore (GitHub OIDC token)"
        raise PipelineError(f"signing {model_dir} with {how} failed: {type(exc).__name__}: {exc}") from None
    return True


def required() -> bool:
    """True when a public key or identity is configured: then every registry model must verify."""
    return verifier_mode() is not None


def verify(model_dir: Path, signature: Path | None, what: str) -> None:
    """Refuse `what` unless its signature matches model_dir (only when a verifier is configured)."""
    mode = verifier_mode()
    if mode is None:
        return
    derived = mode == "identity" and not os.environ.get(IDENTITY_ENV, "").strip()
    setting = PUBLIC_KEY_ENV if mode == "key" else (
        f"the merge workflow's identity {identity()}" if derived else IDENTITY_ENV)
    if signature is None or not signature.is_file():
        raise PipelineError(f"{what}: refused: unsigned, and {setting} requires a signature")
    _library()
    import model_signing.verifying

    config = model_signing.verifying.Config()
    try:
        if mode == "key":
            config.use_elliptic_key_verifier(public_key=str(_key(PUBLIC_KEY_ENV)))
        else:
            config.use_sigstore_verifier(identity=str(identity()),
                                         oidc_issuer=os.environ.get(ISSUER_ENV, "").strip() or GITHUB_ISSUER)
        config.verify(model_dir, signature)
    except Exception as exc:
        raise PipelineError(f"{what}: refused: its signature does not verify with {setting}: {exc}") from None
