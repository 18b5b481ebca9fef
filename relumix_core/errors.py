"""User-facing errors: one clear message naming what was found and what was expected."""


class ReLumixError(Exception):
    """Base class for errors caused by user input (files, options), not by bugs."""


class CheckpointError(ReLumixError):
    """A checkpoint is missing, unreadable, unsafe, or not a ReLumix checkpoint."""
