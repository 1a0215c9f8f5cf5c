"""Finished explanations, kept by what they depend on, so a second look is instant.

An explanation is a pure function of the customer's history before the as-of date, the model,
the language, the backend that writes it and what ranks the actions (measured effects, the
policy, the experiment). The key hashes exactly those, so a new event, a new model, a refit
of the effects or another as-of date is a miss by construction; nothing has to be invalidated
by hand. ``forget`` drops one customer's entries (erasure).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import pandas as pd

from assistant.schema import Explanation

HISTORY_COLUMNS = ("event_id", "ts", "event", "amount", "quantity", "item", "rating", "text")


def snapshot_key(history: pd.DataFrame, customer_id: str, cutoff: pd.Timestamp, model: str,
                 lang: str, backend: str, context: str = "") -> str:
    """A digest of one customer's events before ``cutoff`` and of everything else the
    explanation depends on; ``context`` names the action ranking's state."""
    mine = history[(history["customer_id"] == customer_id) & (history["ts"] < cutoff)]
    cols = [c for c in HISTORY_COLUMNS if c in mine.columns]
    rows = mine[cols].sort_values(["ts", "event_id"] if "event_id" in cols else ["ts"])
    digest = hashlib.sha256()
    for part in (customer_id, cutoff.isoformat(), model, lang, backend, context):
        digest.update(part.encode("utf-8") + b"\x1f")
    digest.update(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes())
    return digest.hexdigest()


class ExplanationCache:
    """A bounded, thread-safe LRU of explanations by ``snapshot_key``."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[str, Explanation] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Explanation | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item.model_copy(deep=True)

    def put(self, key: str, value: Explanation) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value.model_copy(deep=True)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def forget(self, customer_id: str) -> int:
        """Drop every entry of one customer; returns how many."""
        with self._lock:
            gone = [k for k, v in self._items.items() if v.customer_id == customer_id]
            for k in gone:
                del self._items[k]
            return len(gone)

    def __len__(self) -> int:
        return len(self._items)
