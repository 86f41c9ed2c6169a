"""`python -m pipeline.serving.compile MODEL_DIR CONTRACT_JSON`: compile the verified fast path.

Why: the server starts in well under a second when it needs NumPy only. This writes
`fastpath.npz` + `fastpath.json` next to the model, after checking them against scikit-learn
(see predictor.save_compiled). The image build runs it (infra/docker/Dockerfile); a model the fast
path does not support gets no artifact and is served by scikit-learn as before (exit 0 either way).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.serving import contract, predictor


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    model_dir = Path(argv[0])
    ok = predictor.compile_fast_path(model_dir, contract.load(argv[1]))
    print(f"fast path {'compiled and verified' if ok else 'not supported for this model: scikit-learn only'} ({model_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
