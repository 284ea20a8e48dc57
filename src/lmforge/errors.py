"""The one exception type for mistakes a user can fix.

The CLI catches `UserError` and prints its message as a single line with a
non-zero exit code; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input (path, recipe, data, request), not with lmforge."""
