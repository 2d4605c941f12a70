"""uvicorn's httptools connection, guarded against slow and oversized clients.

uvicorn arms its keep-alive timer only after a response, and bounds neither the time a client may take
to send its headers nor their size. This subclass closes a connection that sends nothing for
`idle_timeout_s` (also before its first request), answers 408 to headers that take longer than
`header_timeout_s` and 431 to headers over `max_header_bytes`, and words parser errors as JSON.
(The body's own timeout is the application's: `serve.app.App.read_body`.)
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def guarded_protocol(header_timeout_s: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    class GuardedProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.header_bytes, self.reading_headers, self.header_timer = 0, True, None
            # uvicorn's keep-alive timer, armed before the first request too; data_received disarms it
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.reading_headers and not self.transport.is_closing():  # still inside the headers
                self.header_bytes += len(data)
                if self.header_bytes > max_header_bytes:
                    self.refuse(431, f"request headers over {max_header_bytes} bytes")

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.reading_headers, self.header_fields = True, 0
            self.header_timer = self.loop.call_later(
                header_timeout_s,
                self.refuse,
                408,
                f"request headers not received within {header_timeout_s:g}s",
            )

        def on_header(self, name: bytes, value: bytes) -> None:
            self.header_fields += len(name) + len(value)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.reading_headers, self.header_bytes = False, 0
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None
            if self.header_fields > max_header_bytes:  # headers that arrived whole in one read
                self.refuse(431, f"request headers over {max_header_bytes} bytes")
                raise ValueError("headers too large")  # stops the parser; the connection is closed
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            self.reading_headers, self.header_bytes = True, 0  # the next request's headers
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            self.refuse(400, f"malformed HTTP request: {msg}")

        def refuse(self, status: int, message: str) -> None:
            if self.transport.is_closing():
                return
            body = orjson.dumps({"error": message})
            self.transport.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (status, REASONS[status], len(body), body)
            )
            self.transport.close()

    return GuardedProtocol
