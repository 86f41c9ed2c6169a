"""The one error type the CLI turns into a clean message and an exit code, and `clip`, which keeps
every value echoed in a message or report short."""

from __future__ import annotations

# The longest value a message or report repeats: a 10^6-character cell must not become megabytes
# of stderr or a report the comment gate refuses.
ECHO_LIMIT = 80


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


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
