"""What every CLI command shares: consoles, clean errors, progress bars and event loading."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from assistant.llm import LLMUnavailable
from finetune.contract import DataError, ValidationReport
from finetune.loaders import ColumnMapping, load_events, load_events_sql
from service.erasure import drop_erased

err = Console(stderr=True)
out = Console()


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input or an impossible request: one red line and exit code 2, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DataError, ValueError, LookupError, FileNotFoundError, LLMUnavailable) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


class _LogTracker:
    """Progress as timestamped lines, for logs (cron, CI, ``nohup``) where a live bar prints
    nothing at all: every stage message, and optimizer steps at most every ``every`` seconds."""

    def __init__(self, label: str, every: float = 30.0) -> None:
        self.label, self.every = label, every
        self.start = time.monotonic()
        self.last_step = -every

    def _line(self, message: str) -> None:
        elapsed = time.monotonic() - self.start
        err.print(f"{datetime.now().strftime('%H:%M:%S')} [{elapsed:7.0f}s] {self.label}: "
                  f"{message}", highlight=False, soft_wrap=True, markup=False)

    def __call__(self, message: str) -> None:
        self._line(message)

    def steps(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if done >= total or now - self.last_step >= self.every:
            self.last_step = now
            self._line(f"{message} ({done}/{total})")


@contextmanager
def progress_bar(total: int | None, label: str):
    """Yields ``advance(message)`` for steps and ``update(done, total, message)`` for bars: a
    live bar on a terminal, plain timestamped lines otherwise."""
    if not err.is_terminal:
        tracker = _LogTracker(label)
        tracker("started")
        yield tracker
        tracker("finished")
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)

        class Tracker:
            def __call__(self, message: str) -> None:
                progress.update(task, advance=1, description=f"{label}: {message}")

            def steps(self, done: int, total: int, message: str) -> None:
                progress.update(task, completed=done, total=total,
                                description=f"{label}: {message}")

        yield Tracker()


def print_report(report: ValidationReport) -> None:
    err.print(f"[green]ok[/] {report.summary()}", highlight=False, soft_wrap=True)


def load_cli_events(events: Path | None, sql_url: str | None, query: str | None,
                    maps: list[str] | None, mapping_file: Path | None,
                    drop_invalid: bool) -> tuple[pd.DataFrame, str]:
    mapping = ColumnMapping.parse(maps, mapping_file)
    if sql_url:
        if not query:
            raise ValueError("--sql-url needs --query, e.g. 'SELECT * FROM events'")
        frame, report = load_events_sql(sql_url, query, mapping, drop_invalid=drop_invalid)
        name = "sql"
    elif events:
        frame, report = load_events(events, mapping, drop_invalid=drop_invalid)
        name = events.name.split(".")[0]
    else:
        raise ValueError("give --events FILE or --sql-url URL --query SQL")
    print_report(report)
    frame, dropped = drop_erased(frame, erased_customers())
    if dropped:
        err.print(f"dropped {dropped:,} erased customer(s) (`retention forget`) from the events")
    return frame, name


def erased_customers() -> set[str]:
    """The erasure hashes in the service's database (RETENTION_DATABASE_URL or the home's
    SQLite file, when it exists): training, evaluation and scoring never see an erased
    customer again, even in a file exported before the erasure."""
    from service.erasure import erased_hashes
    from service.settings import Settings

    settings = Settings()
    url = settings.db_url
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return set()
    from service import db

    engine = db.engine_for(url)
    try:
        return erased_hashes(db.sessions(engine))
    finally:
        engine.dispose()
