"""The one base of the errors a user can fix: the CLI prints their message alone, without a traceback."""


class TlrunError(Exception):
    """A problem with the input (config, data, weights) whose message says what to do about it."""
