"""Errors that the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """A mistake the user can fix: the message says what was wrong and what to do."""
