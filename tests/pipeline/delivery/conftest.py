"""The delivery tests use the serving tests' model: one trained by the template's own code."""

from tests.pipeline.serving.conftest import config, contract, good_row, model_dir  # noqa: F401 - shared fixtures
