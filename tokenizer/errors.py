"""The one exception type for mistakes a user can make (bad path, value, checkpoint), and the first line
of an exception's message.

They live here, in the package below `nbp`, so that the tokenizer can use them without importing `nbp`;
`nbp.errors` re-exports both, next to how the command line reports errors.
"""

from __future__ import annotations


class UserError(ValueError):
    """A problem with the user's input, reported as one line without a traceback."""


def first_line(err: BaseException | str, limit: int = 160) -> str:
    """The first non-empty line of an exception's message (its type name when the message is empty)."""
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    if not text and isinstance(err, BaseException):
        text = type(err).__name__
    return text[:limit]
