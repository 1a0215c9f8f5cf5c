"""The service's one clock: the as-of date every score, reason, warning and report uses.

Offline, a backtest figure is computed at one cutoff from the events strictly before it. Live,
the same must hold, so the service never scores a customer at a date of their own (the day after
*their* last event makes recency, the strongest churn signal, always about zero). It scores
everyone at one as-of date, chosen by ``RETENTION_AS_OF``:

- ``today`` (default): the current UTC date; events of today are seen tomorrow.
- ``data``: the day after the newest stored event of any customer, for demos and replays whose
  data ends in the past.
- ``YYYY-MM-DD``: a fixed date (a backfill, an audit of what the service said then).

Events dated in the future (later than now plus ``FUTURE_TOLERANCE``) are refused at ingestion,
so one bad timestamp can never move anyone's date; events later than a fixed as-of date are
stored and stay unseen until the clock reaches them (a cutoff reads only ``ts < as_of``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

FUTURE_TOLERANCE = pd.Timedelta(hours=1)
"""Clock skew between a shop's servers and this one that is still accepted."""

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_as_of(value: str) -> str:
    """Check an ``RETENTION_AS_OF`` value: ``today``, ``data`` or a calendar date."""
    value = (value or "today").strip().lower()
    if value in ("today", "data"):
        return value
    if not _DATE.match(value):
        raise ValueError(f"as-of must be 'today', 'data' or a date YYYY-MM-DD, got {value!r}")
    try:
        pd.Timestamp(value)
    except ValueError as exc:
        raise ValueError(f"as-of {value!r} is not a calendar date") from exc
    return value


def utc_midnight(value: str | pd.Timestamp | datetime) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.normalize()


@dataclass
class Clock:
    """``as_of()`` is the cutoff (a UTC midnight) for everything the service answers now.

    ``newest_event`` tells the ``data`` mode where the stored history ends; ``wall`` is the real
    time (replaceable in tests). ``set`` moves a controlled clock (replays, backfills)."""

    mode: str = "today"
    newest_event: Callable[[], pd.Timestamp | None] = lambda: None
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.mode = parse_as_of(self.mode)

    def now(self) -> pd.Timestamp:
        return pd.Timestamp(self.wall()).tz_convert("UTC")

    def as_of(self) -> pd.Timestamp:
        with self._lock:
            mode = self.mode
        if mode == "today":
            return utc_midnight(self.now())
        if mode == "data":
            newest = self.newest_event()
            if newest is None or pd.isna(newest):  # nothing stored yet: today is as good as any
                return utc_midnight(self.now())
            return utc_midnight(newest) + pd.Timedelta(days=1)
        return utc_midnight(mode)

    def set(self, value: str) -> pd.Timestamp:
        with self._lock:
            self.mode = parse_as_of(value)
        return self.as_of()

    def latest_allowed(self) -> pd.Timestamp:
        """Events after this instant are refused: they have not happened yet."""
        return self.now() + FUTURE_TOLERANCE


EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")
"""Events before this are refused: no shop's history starts earlier, and a year-424 timestamp
(found by the schema fuzzer) broke the nanosecond Parquet export of the rescoring for everyone."""


def future_rows(ts: pd.Series, limit: pd.Timestamp) -> list[int]:
    """Positions of timestamps later than ``limit`` (for a problem that names the rows)."""
    values = pd.to_datetime(ts, utc=True, format="mixed")
    return [int(i) for i in (values > limit).to_numpy().nonzero()[0]]


def ancient_rows(ts: list[datetime]) -> list[int]:
    """Positions of timestamps before ``EARLIEST`` (checked one by one: such values do not fit
    pandas' nanosecond timestamps)."""
    earliest = EARLIEST.to_pydatetime()
    return [i for i, t in enumerate(ts) if (t if t.tzinfo else t.replace(tzinfo=UTC)) < earliest]
