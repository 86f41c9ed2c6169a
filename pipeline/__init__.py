"""The pipeline steps: validate, train, evaluate, report, promote (and build, deploy).

Each step is a module of the same name; `pipeline.cli` is the only entry point.
"""
