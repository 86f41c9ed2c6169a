"""Signing promoted models and checking them where they are loaded back (the `model-signing`
package, key mode: an elliptic-curve PEM key pair, no network).

`MLOPS_MODEL_SIGNING_KEY` (a private key file) makes promote sign the model directory; the
signature travels in the registry artifact beside the model. `MLOPS_MODEL_SIGNING_PUBLIC_KEY`
(its public key) makes every registry pull verify it: a model whose bytes do not match its
signature, or that has none, is refused. Keyless signing with GitHub's OIDC token is not here yet.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.errors import PipelineError

KEY_ENV = "MLOPS_MODEL_SIGNING_KEY"
PUBLIC_KEY_ENV = "MLOPS_MODEL_SIGNING_PUBLIC_KEY"
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


def sign(model_dir: Path, signature: Path) -> bool:
    """Sign model_dir into `signature` with MLOPS_MODEL_SIGNING_KEY; False when no key is set."""
    key = _key(KEY_ENV)
    if key is None:
        return False
    _library()
    import model_signing.signing

    try:
        model_signing.signing.Config().use_elliptic_key_signer(private_key=key).sign(model_dir, signature)
    except Exception as exc:  # the library raises many types; one line for the user
        raise PipelineError(f"signing {model_dir} with {KEY_ENV}={key} failed: {type(exc).__name__}: {exc}") from None
    return True


def required() -> bool:
    """True when a public key is configured: then every registry model must verify."""
    return _key(PUBLIC_KEY_ENV) is not None


def verify(model_dir: Path, signature: Path | None, what: str) -> None:
    """Refuse `what` unless its signature matches model_dir (only when a public key is configured)."""
    key = _key(PUBLIC_KEY_ENV)
    if key is None:
        return
    if signature is None or not signature.is_file():
        raise PipelineError(f"{what}: refused: unsigned, and {PUBLIC_KEY_ENV} requires a signature")
    _library()
    import model_signing.verifying

    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=key).verify(model_dir, signature)
    except Exception as exc:
        raise PipelineError(f"{what}: refused: its signature does not verify with {PUBLIC_KEY_ENV}: {exc}") from None
