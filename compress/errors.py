"""Errors that the CLI turns into a one-line message and exit code 2."""


class UserError(Exception):
    """A mistake the user can fix: the message says what was wrong and what to do."""


class Interrupted(Exception):
    """Ctrl-C during long work whose progress was kept: the message says how to continue (exit code 130)."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (or its type name), to quote inside a one-line error."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
