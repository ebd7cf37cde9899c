"""Errors meant for people, not tracebacks."""


class UserError(Exception):
    """Bad input or configuration: entry points print the message on one line and exit 1."""
