"""Requests per key and minute (a sliding window in memory, per process): a leaked or runaway
key slows down to the limit instead of taking the service with it."""

from __future__ import annotations

import math
import threading
import time
from collections import deque


class RateLimiter:
    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute, self.window_s = per_minute, window_s
        self._hits: dict[int, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key_id: int, now: float | None = None) -> int | None:
        """Count one request; None when allowed, else the seconds to wait (``Retry-After``)."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key_id, deque())
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.per_minute:
                return max(1, math.ceil(hits[0] + self.window_s - now))
            hits.append(now)
            return None
