"""Named errors of the runtime and server, each mapped here, and nowhere else, to one HTTP status and one
gRPC status code (the gRPC transport looks the code up by name: errors.py stays free of grpc)."""

MAX_MESSAGE = 500  # characters: a message repeats what the client sent (names, versions), never all of it


class ServeError(Exception):
    status = 500
    grpc_code = "INTERNAL"

    def __init__(self, message: str):
        """`message`, made one line of at most MAX_MESSAGE characters."""
        message = " ".join(message.splitlines())
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.message = message


class BadRequest(ServeError):
    status = 400  # anything malformed in what the client sent
    grpc_code = "INVALID_ARGUMENT"


class NotFound(ServeError):
    status = 404  # unknown model, version or path
    grpc_code = "NOT_FOUND"


class MethodNotAllowed(ServeError):
    status = 405
    grpc_code = "UNIMPLEMENTED"


class ClientGone(ServeError):
    status = 499  # the client disconnected mid-request; nothing is sent, the metrics count it apart
    grpc_code = "CANCELLED"


class PayloadTooLarge(ServeError):
    status = 413  # body over the configured limit
    grpc_code = "RESOURCE_EXHAUSTED"


class Unavailable(ServeError):
    status = 503  # not ready, or a model (version) that is not loaded
    grpc_code = "UNAVAILABLE"


class QueueFull(Unavailable):
    status = 503  # a model's batching queue is full: retry later
    grpc_code = "RESOURCE_EXHAUSTED"


class ModelLoadError(Exception):
    """A model directory that cannot be served; the message is the reason reported for it."""
