"""Reading ahead on a background thread, so parsing a table overlaps the work done on its batches."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator


def read_ahead(items: Iterator, depth: int = 2) -> Iterator:
    """Iterate `items` on a background thread, at most `depth` items ahead of the consumer. An error in
    the thread is raised in the consumer; a consumer that stops early stops the thread."""
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        handoff.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                handoff.get_nowait()
            except queue.Empty:
                thread.join(0.05)
