"""The serving runtime: a FastAPI app that serves the trained model under the data contract.

The image runs it (`python -m pipeline.serving`, settings from the environment) with only this
package, the import-free `pipeline/__init__.py` and `model/` beside it: so nothing here imports
MLflow, the config or any other `pipeline` module (tests/pipeline/serving/test_boundary.py).
Files: `contract.py` (the request contract as plain data), `schema.py` (pydantic models),
`predictor.py` (loads the MLflow model directory without MLflow), `fastpath.py` and `compile.py`
(the verified NumPy fast path), `metrics.py` (Prometheus), `settings.py`, `app.py` (routes),
`server.py` (pre-forked uvicorn, TCP_NODELAY, header and read-time limits, graceful drain).
Locally: `mlops serve` (pipeline/delivery/serve.py).
"""
