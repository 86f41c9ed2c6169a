"""The one error type the CLI turns into a clean message and an exit code."""

from __future__ import annotations


class PipelineError(Exception):
    """A problem the user must fix (bad data, bad config, failed gate): no traceback shown.

    `file`/`line` or `config_key` say where the problem is, when known (GitHub annotations
    point there); `exit_code` is 1 unless the command reserves 1 for a finding (drift: 2).
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 config_key: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.file = file
        self.line = line
        self.config_key = config_key
        self.exit_code = exit_code
