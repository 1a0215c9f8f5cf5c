"""One model pass at a time, with single-customer requests ahead of bulk work.

2 cores gain nothing from parallel forward passes and the model's memo caches are not
thread-safe, so scoring is serialised. A plain lock let a 2,000-customer batch hold the model
for 37 s while an agent's ``/risk`` waited 35 s. Bulk work (big batches, the daily rescoring,
reports) therefore runs in small chunks, each taking the gate with ``bulk()``, which waits while
any interactive request (``interactive()``) is waiting or running: an agent waits for at most one
chunk, never for the whole batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ScoringGate:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._owner: int | None = None
        self._depth = 0
        self._interactive_waiting = 0
        self._local = threading.local()

    def _free_for(self, me: int) -> bool:
        return self._owner is None or self._owner == me

    @contextmanager
    def interactive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            self._interactive_waiting += 1
            try:
                self._cond.wait_for(lambda: self._free_for(me))
            finally:
                self._interactive_waiting -= 1
            self._owner, self._depth = me, self._depth + 1
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def bulk(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            self._cond.wait_for(lambda: self._owner == me or (
                self._owner is None and self._interactive_waiting == 0))
            self._owner, self._depth = me, self._depth + 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        with self._cond:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    # ``with gate:`` is ``with gate.bulk():``, for code that takes a lock object (reports).
    def __enter__(self) -> None:
        stack = self._local.__dict__.setdefault("stack", [])
        cm = self.bulk()
        cm.__enter__()
        stack.append(cm)

    def __exit__(self, *exc: object) -> None:
        self._local.stack.pop().__exit__(*exc)
