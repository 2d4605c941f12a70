"""The one error type the command line turns into a one-line message and a non-zero exit."""


class PipelineError(Exception):
    """A problem with the user's input or configuration, worded for the user (one line, no traceback)."""
