"""Named errors of the runtime and server, each mapped to one HTTP status here and nowhere else."""


class ServeError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(ServeError):
    status = 400  # anything malformed in what the client sent


class NotFound(ServeError):
    status = 404  # unknown model, version or path


class MethodNotAllowed(ServeError):
    status = 405


class ClientGone(ServeError):
    status = 499  # the client disconnected mid-request; nothing is sent, the metrics count it apart


class PayloadTooLarge(ServeError):
    status = 413  # body over the configured limit


class Unavailable(ServeError):
    status = 503  # not ready, or the batching queue is full


class ModelLoadError(Exception):
    """A model directory that cannot be served; the message is the reason reported for it."""
