"""The one exception type users see: the CLI prints its message as a single line and exits 2."""


class NervError(Exception):
    """A problem the user can fix (bad input, bad file, missing optional dependency)."""


class CheckpointError(NervError):
    """A checkpoint or export folder that cannot be loaded; the message says what is wrong."""
