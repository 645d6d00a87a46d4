"""alkit's own exception types.

Every error a user can cause (bad file, bad config, missing data) is raised as a
subclass of :class:`AlkitError`. The CLI prints it as one line and exits with 2.
"""
from __future__ import annotations


class AlkitError(Exception):
    """Base class for errors caused by input, configuration or environment."""


class DatasetError(AlkitError):
    """A dataset file or folder is missing, malformed or inconsistent."""


class DataNotFoundError(DatasetError):
    """No local copy of a dataset exists and it could not be downloaded."""


class UnsafePickleError(DatasetError):
    """A pickle tried to load an object outside the allowed set."""


class ConfigError(AlkitError):
    """An experiment configuration or option value is invalid."""


class StrategyError(AlkitError):
    """A query strategy is unknown or was called with invalid arguments."""


class RunStoreError(AlkitError):
    """A run folder is inconsistent with the requested run."""


class LabelingError(AlkitError):
    """A labeling-project operation was given invalid input."""
