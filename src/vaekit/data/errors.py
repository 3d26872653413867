"""The one error of the data wing, below every module that raises it."""


class DataError(ValueError):
    """Data is missing, corrupt or unusable; the message names the file or dataset."""
