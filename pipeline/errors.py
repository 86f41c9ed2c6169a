"""The one error type the CLI turns into a clean message and exit code 1."""


class PipelineError(Exception):
    """A problem the user must fix (bad data, bad config, failed gate): no traceback shown."""
