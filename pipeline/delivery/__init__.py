"""Delivery: what happens after a model is promoted, apart from the pull-request steps.

`serve.py` (`mlops serve`: run the serving runtime locally on a registered model), `build.py`
(`mlops build`: stage and build the serving image), `deploy.py` (`mlops deploy`: roll the image
out to swarm or Kubernetes, smoke-test, roll back), `registry.py` (`mlops registry`: the model
registry for people) and `contract.py` (mlops.yaml's data contract
as the runtime's request contract). These may use the config and MLflow; the runtime they ship,
`pipeline/serving/`, uses neither.
"""
