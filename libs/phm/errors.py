"""Errors a user can act on.

A `UserError` is caught by the CLI and printed as one line (no traceback)
with exit code 2: the message must name the file, key or table at fault and
say what to do. Anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """An error caused by input or configuration, with a message that says the fix."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration file or override is invalid."""


class MissingJarError(UserError):
    """A JVM jar the Spark session needs has not been fetched."""


class UnknownTableError(UserError):
    """A table name is not declared in the table catalogue."""


class SchemaMismatchError(UserError):
    """A DataFrame does not match the declared schema of the table it is written to."""


class UnknownJobError(UserError):
    """A job name is not registered."""


class MissingTableError(UserError):
    """A job reads a table that no earlier job has written."""
