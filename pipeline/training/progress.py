"""Progress of long work: a live bar on a terminal, a few plain lines anywhere else (a pipe, a CI log)."""

from __future__ import annotations

import sys
import time

LINE_EVERY_S = 30.0  # at most this long between lines off a terminal


class Progress:
    def __init__(self, label: str, total: int, enabled: bool = True, stream=None):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stderr
        self.bar = None
        self.last_line, self.last = 0.0, ""
        if enabled and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="epoch", leave=False, file=self.stream)

    def update(self, done: int, **values: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix(**values)
            return
        self.last = f"{self.label}: epoch {done}/{self.total} " + " ".join(
            f"{k}={v}" for k, v in values.items()
        )
        now = time.monotonic()
        every = max(self.total // 10, 1)
        if done == 1 or done % every == 0 or now - self.last_line >= LINE_EVERY_S:
            print(self.last, file=self.stream, flush=True)
            self.last_line, self.last = now, ""

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.last:  # the final state, if its line was not printed yet
            print(self.last, file=self.stream, flush=True)
