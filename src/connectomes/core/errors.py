"""User-facing errors: one clear sentence saying what is wrong and what to do.

The CLI prints these without a traceback and exits non-zero; anything else is a bug.
"""


class UserError(Exception):
    """A mistake in the user's input (config, data, files), not a bug in the toolkit."""


class DataError(UserError):
    """Missing, corrupt or inconsistent data files."""


class CheckpointError(UserError):
    """A checkpoint or connectome file that cannot be used."""


class ConfigError(UserError):
    """A config key that is unknown, badly typed or out of range."""


class TrainingError(UserError):
    """A training run that cannot start, resume or continue."""


class StorageError(UserError):
    """A file that cannot be written: the storage is full or read-only, or something other than a plain
    file (a symbolic link, a folder) is in its place."""
