"""`python -m pipeline.serving`: the image's entry point (settings from the environment)."""

import sys

from pipeline.serving.server import main

sys.exit(main())
