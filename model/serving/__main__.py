"""`python -m model.serving`: the image's entry point (settings from the environment)."""

import sys

from model.serving.server import main

sys.exit(main())
