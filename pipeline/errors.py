"""The one error type the command line turns into a one-line message and a non-zero exit."""


class PipelineError(Exception):
    """A problem with the user's input or configuration, worded for the user (one line, no traceback)."""


def disk_error(exc: OSError) -> str:
    """An OSError from writing or reading the disk (a full disk, a read-only or forbidden folder) in one
    line, with the path it concerns."""
    where = exc.filename2 or exc.filename
    return f"{exc.strerror or exc}: {where}" if where else str(exc.strerror or exc)
