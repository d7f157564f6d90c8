"""The one exception type for mistakes a user can make (bad path, value, checkpoint).

The command line turns it into a single line on stderr and exit code 2; library
callers can catch it like any ValueError.
"""


class UserError(ValueError):
    """A problem with the user's input, reported as one line without a traceback."""
