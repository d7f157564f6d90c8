"""`UserError`, the one exception type for mistakes a user can make.

It lives in `tokenizer.errors` because `tokenizer/` sits below `nbp/` and must not import it; this module
re-exports it so that code in `nbp/` and above keeps one name for it.
"""

from tokenizer.errors import UserError

__all__ = ["UserError"]
