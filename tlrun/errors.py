"""The one base of the errors a user can fix: the CLI prints their message alone, without a traceback."""


class TlrunError(Exception):
    """A problem with the input (config, data, weights) whose message says what to do about it."""


class DataError(TlrunError):
    """A dataset cannot be loaded: missing, corrupt, or inconsistent files. The message says what to do."""


class OracleRefused(RuntimeError):
    """A method asked for target accuracy in a run that is not an oracle run: a bug in the method, not the input."""
