"""Errors the lab reports as one line, never as a traceback."""


class LabError(Exception):
    """A problem with the input or the machine that the user can act on."""


class CommandTimeout(LabError):
    """A command in the target did not finish within its bound (it was killed)."""
