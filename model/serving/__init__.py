"""The model server: a FastAPI app that serves the trained model under the data contract.

Files: `contract.py` (request contract derived from mlops.yaml), `schema.py` (pydantic models),
`predictor.py` (loads the MLflow model directory without MLflow), `metrics.py` (Prometheus),
`app.py` (routes), `server.py` (pre-forked uvicorn, TCP_NODELAY, graceful drain).
Start it with `mlops serve` (local) or `python -m model.serving` (the image, settings from env).
"""
