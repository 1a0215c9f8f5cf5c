"""The service's clock, the daily schedule and the scoring gate, without a model."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pandas as pd
import pytest

from service.clock import Clock, future_rows, parse_as_of
from service.gate import ScoringGate
from service.scheduler import DailyRescore, due_at_start, next_run, parse_time

WALL = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)


def test_as_of_modes():
    newest = pd.Timestamp("2025-12-30 17:00", tz="UTC")
    assert Clock("today", wall=lambda: WALL).as_of() == pd.Timestamp("2026-03-10", tz="UTC")
    assert Clock("data", newest_event=lambda: newest).as_of() == pd.Timestamp("2025-12-31",
                                                                               tz="UTC")
    assert Clock("2025-06-01").as_of() == pd.Timestamp("2025-06-01", tz="UTC")
    # Nothing stored yet: the data clock falls back to today rather than failing.
    assert Clock("data", wall=lambda: WALL).as_of() == pd.Timestamp("2026-03-10", tz="UTC")
    clock = Clock("today", wall=lambda: WALL)
    assert clock.set("2025-01-02") == pd.Timestamp("2025-01-02", tz="UTC")


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-01", "2025/01/01", "01-02-2025"])
def test_bad_as_of_values_are_refused(bad):
    with pytest.raises(ValueError, match="as-of"):
        parse_as_of(bad)


def test_future_rows_are_found_by_position():
    limit = Clock("today", wall=lambda: WALL).latest_allowed()
    ts = pd.Series(["2026-03-10T15:00:00Z", "2099-01-01", "2026-03-10T16:20:00Z",
                    "2026-03-10T17:00:00Z"])
    assert future_rows(ts, limit) == [1, 3]  # 16:20 is within the hour of clock skew


def test_schedule():
    at = parse_time("02:00")
    assert parse_time("") is None and parse_time(None) is None
    with pytest.raises(ValueError, match="HH:MM"):
        parse_time("2am")
    assert next_run(WALL, at) == datetime(2026, 3, 11, 2, 0, tzinfo=UTC)
    early = datetime(2026, 3, 10, 1, 0, tzinfo=UTC)
    assert next_run(early, at) == datetime(2026, 3, 10, 2, 0, tzinfo=UTC)
    assert due_at_start(WALL, at, done_today=False)
    assert not due_at_start(WALL, at, done_today=True)
    assert not due_at_start(early, at, done_today=False)


def test_daily_job_catches_up_at_start_once():
    runs: list[int] = []
    job = DailyRescore(parse_time("02:00"), run=lambda: runs.append(1),
                       done_for_current=lambda: bool(runs), wall=lambda: WALL)
    job.start()
    deadline = time.monotonic() + 5
    while not runs and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    assert runs == [1]  # and it then sleeps until tomorrow 02:00, not in a loop


def test_bulk_work_yields_to_a_waiting_interactive_request():
    gate = ScoringGate()
    order: list[str] = []
    in_chunk = threading.Event()
    release = threading.Event()

    def bulk() -> None:
        for k in range(3):
            with gate.bulk():
                order.append(f"bulk{k}")
                if k == 0:
                    in_chunk.set()
                    release.wait(5)

    worker = threading.Thread(target=bulk)
    worker.start()
    in_chunk.wait(5)

    def agent() -> None:
        with gate.interactive():
            order.append("agent")

    asker = threading.Thread(target=agent)
    asker.start()
    for _ in range(200):  # the agent is queued behind the running chunk
        if gate._interactive_waiting:
            break
        time.sleep(0.005)
    release.set()
    worker.join(5)
    asker.join(5)
    # The agent waited for one chunk, not for the whole batch.
    assert order == ["bulk0", "agent", "bulk1", "bulk2"]


def test_gate_is_reentrant_and_works_as_a_lock():
    gate = ScoringGate()
    with gate.interactive(), gate.bulk(), gate:
        pass
    done = []
    t = threading.Thread(target=lambda: (gate.__enter__(), done.append(1),
                                         gate.__exit__(None, None, None)))
    t.start()
    t.join(2)
    assert done == [1] and gate._owner is None
