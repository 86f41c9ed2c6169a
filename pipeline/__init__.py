"""The machinery around the model: the pull-request steps (validate, train, evaluate, report,
promote), `delivery/` (serve, build, deploy) and `serving/` (the image's runtime).

`pipeline.cli` is the only entry point. This file stays import-free: the serving image ships it
with `serving/` alone.
"""
