"""The daily rescoring inside the service (``RETENTION_RESCORE_AT``, e.g. ``02:00`` UTC).

A thread sleeps until the next run time and then rescores every stored customer at the as-of
date. At start-up it catches up: if today's run time has passed and no finished run exists for
the current as-of date, it runs at once (a service restarted at 09:00 does not wait a day).
Those who prefer cron or a Kubernetes CronJob set the value empty and run ``retention rescore``.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

log = logging.getLogger("retention.scheduler")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def parse_time(value: str | None) -> time | None:
    """``HH:MM`` (UTC) or empty for off."""
    if value is None or not value.strip():
        return None
    match = _HHMM.match(value.strip())
    if not match:
        raise ValueError(f"rescore time must be HH:MM (UTC, 24 h) or empty, got {value!r}")
    return time(int(match.group(1)), int(match.group(2)), tzinfo=UTC)


def next_run(now: datetime, at: time) -> datetime:
    """The first run time strictly after ``now``."""
    today = datetime.combine(now.date(), at.replace(tzinfo=None), tzinfo=UTC)
    return today if today > now else today + timedelta(days=1)


def due_at_start(now: datetime, at: time, done_today: bool) -> bool:
    """Catch up at start-up when today's run time has passed without a run."""
    today = datetime.combine(now.date(), at.replace(tzinfo=None), tzinfo=UTC)
    return now >= today and not done_today


@dataclass
class DailyRescore:
    at: time
    run: Callable[[], object]  # the job: rescore everyone at the as-of date
    done_for_current: Callable[[], bool]  # a finished run exists for the current as-of date
    wall: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="daily-rescore", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _safe_run(self) -> None:
        try:
            log.info("daily rescoring: %s", self.run())
        except Exception:
            log.exception("daily rescoring failed")

    def _loop(self) -> None:
        if due_at_start(self.wall(), self.at, self.done_for_current()):
            self._safe_run()
        while not self._stop.is_set():
            wait = (next_run(self.wall(), self.at) - self.wall()).total_seconds()
            if self._stop.wait(max(1.0, wait)):
                return
            self._safe_run()
