"""The ``retention`` command line: import data, make demo data, evaluate, and the main demo job.

Bad input ends with one clear line (exit code 2), never a traceback; machine output (``--json``)
goes to stdout alone, progress and messages to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from finetune.contract import DataError, ValidationReport
from finetune.evaluate import MODEL_KINDS, EvaluateConfig, evaluate
from finetune.importers import import_amazon_reviews, import_online_retail
from finetune.labels import ChurnDefinition
from finetune.loaders import (
    ColumnMapping,
    load_events,
    load_events_sql,
    write_events,
    write_text_atomic,
)
from finetune.synthetic import SyntheticConfig, generate
from service.settings import Settings

app = typer.Typer(help="Retention Assistant: churn risk, reasons and actions.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
import_app = typer.Typer(help="Turn public datasets into the canonical events table.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")
err = Console(stderr=True)
out = Console()


def clean_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input or an impossible request: one red line and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (DataError, ValueError, FileNotFoundError) as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


@contextmanager
def progress_bar(total: int | None, label: str):
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        task = progress.add_task(label, total=total)

        def advance(message: str) -> None:
            progress.update(task, advance=1, description=f"{label}: {message}")

        yield advance


def _report(report: ValidationReport) -> None:
    err.print(f"[green]ok[/] {report.summary()}", highlight=False, soft_wrap=True)


@import_app.command("online-retail")
@clean_errors
def import_online_retail_cmd(
    src: Annotated[Path, typer.Argument(help="online_retail.csv.gz (UCI Online Retail)")],
    out_path: Annotated[Path, typer.Option("-o", "--out", help="events .parquet or .csv")],
) -> None:
    """Invoices to order events, cancellations to return events."""
    with progress_bar(None, "importing Online Retail"):
        events, report = import_online_retail(src)
    write_events(events, out_path)
    _report(report)
    err.print(f"wrote {out_path}; next: retention evaluate --events {out_path} --horizon 90")


@import_app.command("amazon-reviews")
@clean_errors
def import_amazon_cmd(
    src: Annotated[Path, typer.Argument(help="reviews.parquet (Amazon 5-core reviews)")],
    out_path: Annotated[Path, typer.Option("-o", "--out", help="events .parquet or .csv")],
) -> None:
    """Each review becomes a review event with its rating and text."""
    events, report = import_amazon_reviews(src)
    write_events(events, out_path)
    _report(report)
    err.print(f"wrote {out_path}; reviews stand in for purchases and every user has 5+ reviews: "
              f"retention evaluate --events {out_path} --horizon 90 --activity review --min-prior 5")


@app.command("demo-data")
@clean_errors
def demo_data_cmd(
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="directory for the files")],
    customers: Annotated[int, typer.Option(min=10, help="number of customers")] = 2000,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same data")] = 0,
    days: Annotated[int, typer.Option(min=200, help="days of history")] = 730,
) -> None:
    """Seeded synthetic customers (English and Chinese) as events.parquet and customers.parquet."""
    cfg = SyntheticConfig(customers=customers, seed=seed, days=days)
    with progress_bar(None, f"simulating {customers:,} customers over {days} days"):
        events, people = generate(cfg)
    write_events(events, out_dir / "events.parquet")
    people.to_parquet(out_dir / "customers.parquet", index=False)
    err.print(f"wrote {len(events):,} events for {customers:,} customers to {out_dir}")


def _load(events: Path | None, sql_url: str | None, query: str | None, maps: list[str] | None,
          mapping_file: Path | None, drop_invalid: bool) -> tuple[pd.DataFrame, str]:
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
    _report(report)
    return frame, name


def _print_table(result: dict[str, Any]) -> None:
    out.print(f"[bold]{result['dataset']}[/]: horizon {result['horizon']} days, test cutoff "
              f"{result['test_cutoff']}, {result['n_train']:,} training snapshots, "
              f"{result['n_test']:,} test customers, churn rate {result['test_churn_rate']:.1%}")
    table = Table(show_header=True, header_style="bold")
    cols = ("auc", "pr_auc", "brier", "ece", "lift10", "recall10", "f1")
    table.add_column("model")
    for col in cols:
        table.add_column(col, justify="right")
    for name, metrics in result["models"].items():
        table.add_row(name, *(f"{metrics[c]:.3f}" for c in cols))
    out.print(table)
    for note in result.get("notes", []):
        out.print(f"[dim]note: {note}[/]")


@app.command("evaluate")
@clean_errors
def evaluate_cmd(
    events: Annotated[Optional[Path], typer.Option(help="events file (.csv, .csv.gz, .parquet)")] = None,
    horizon: Annotated[int, typer.Option(min=1, help="churn horizon in days")] = 90,
    models: Annotated[str, typer.Option(help="comma-separated model kinds")] = "lightgbm,logreg,recency",
    kind: Annotated[str, typer.Option(help="churn definition: inactivity or explicit")] = "inactivity",
    lookback: Annotated[int, typer.Option(min=1, help="eligibility: an order in these days")] = 365,
    step: Annotated[int, typer.Option(min=1, help="days between training cutoffs")] = 30,
    activity: Annotated[str, typer.Option(help="events that count as buying, comma-separated")] = "order",
    min_prior: Annotated[int, typer.Option(min=1, help="activity events needed before the cutoff")] = 1,
    max_train_cutoffs: Annotated[Optional[int], typer.Option(help="keep the latest N training cutoffs")] = None,
    map_: Annotated[Optional[list[str]], typer.Option("--map", help="canonical=source column")] = None,
    mapping: Annotated[Optional[Path], typer.Option(help="JSON column mapping file")] = None,
    sql_url: Annotated[Optional[str], typer.Option(help="SQLAlchemy URL, e.g. sqlite:///shop.db")] = None,
    query: Annotated[Optional[str], typer.Option(help="SQL query returning events")] = None,
    drop_invalid: Annotated[bool, typer.Option(help="drop and count invalid rows instead of failing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="also write the JSON here")] = None,
) -> None:
    """Backtest the models on the honest point-in-time protocol and report test metrics."""
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    unknown = [m for m in names if m not in MODEL_KINDS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_KINDS)}")
    definition = ChurnDefinition(kind=kind, horizon=horizon, lookback=lookback,  # type: ignore[arg-type]
                                 activity_events=tuple(a.strip() for a in activity.split(",")),
                                 min_prior=min_prior)
    frame, name = _load(events, sql_url, query, map_, mapping, drop_invalid)
    config = EvaluateConfig(definition=definition, step=step, models=names,
                            max_train_cutoffs=max_train_cutoffs)
    with progress_bar(None, "evaluating") as advance:
        result = evaluate(frame, config, dataset=name, progress=advance)
    if out_file:
        write_text_atomic(json.dumps(result, indent=2), out_file)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        _print_table(result)


@app.command("demo")
@clean_errors
def demo_cmd(
    home: Annotated[Optional[Path], typer.Option(help="working directory (default RETENTION_HOME)")] = None,
    customers: Annotated[Optional[int], typer.Option(min=50, help="synthetic customers")] = None,
) -> None:
    """The main job on embedded defaults: demo data, train, evaluate, print the report."""
    settings = Settings()
    home = home or settings.home
    n = customers or settings.demo_customers
    data_dir = home / "demo"
    events_path = data_dir / "events.parquet"
    if not events_path.exists():
        demo_data_cmd(out_dir=data_dir, customers=n, seed=settings.seed, days=730)
    frame, report = load_events(events_path)
    _report(report)
    with progress_bar(None, "training and evaluating") as advance:
        result = evaluate(frame, EvaluateConfig(), dataset="demo", progress=advance)
    report_path = home / "reports" / "demo_evaluation.json"
    write_text_atomic(json.dumps(result, indent=2), report_path)
    _print_table(result)
    out.print(f"report: {report_path}")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
