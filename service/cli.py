"""The ``retention`` command line: import data, make demo data, evaluate, train, and the demo job.

Bad input ends with one clear line (exit code 2), never a traceback; machine output (``--json``)
goes to stdout alone, progress and messages to stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from finetune.campaign import generate_with_campaign
from finetune.evaluate import EvaluateConfig
from finetune.importers import import_amazon_reviews, import_online_retail
from finetune.loaders import load_events, write_events, write_text_atomic
from finetune.lora import LoraConfig
from finetune.synthetic import SyntheticConfig, generate
from finetune.train import train
from service import cli_assistant, cli_model, cli_score, cli_service, cli_uplift
from service.cli_common import clean_errors, err, out, print_report, progress_bar
from service.settings import Settings

app = typer.Typer(help="Retention Assistant: churn risk, reasons and actions.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
import_app = typer.Typer(help="Turn public datasets into the canonical events table.",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")
cli_model.register(app)
cli_assistant.register(app)
cli_service.register(app)
cli_score.register(app)
cli_uplift.register(app)


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
    print_report(report)
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
    print_report(report)
    err.print(f"wrote {out_path}; reviews stand in for purchases and every user has 5+ reviews: "
              f"retention evaluate --events {out_path} --horizon 90 --activity review --min-prior 5")


@app.command("demo-data")
@clean_errors
def demo_data_cmd(
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="directory for the files")],
    customers: Annotated[int, typer.Option(min=10, help="number of customers")] = 2000,
    seed: Annotated[int, typer.Option(help="random seed; same seed, same data")] = 0,
    days: Annotated[int, typer.Option(min=200, help="days of history")] = 730,
    campaign: Annotated[bool, typer.Option(
        help="add a randomised retention campaign: actions.parquet, and its true effects in "
        "campaign_truth.parquet (for benchmarks only)")] = False,
) -> None:
    """Seeded synthetic customers (English and Chinese) as events.parquet and customers.parquet."""
    cfg = SyntheticConfig(customers=customers, seed=seed, days=days, campaign=campaign)
    with progress_bar(None, f"simulating {customers:,} customers over {days} days"):
        if campaign:
            data = generate_with_campaign(cfg)
            events, people = data.events, data.customers
        else:
            events, people = generate(cfg)
    write_events(events, out_dir / "events.parquet")
    write_events(people, out_dir / "customers.parquet")
    err.print(f"wrote {len(events):,} events for {customers:,} customers to {out_dir}")
    if campaign:
        write_events(data.actions, out_dir / "actions.parquet")
        write_events(data.truth, out_dir / "campaign_truth.parquet")
        err.print(f"wrote {len(data.actions):,} campaign actions on {data.campaign_ts.date()} "
                  f"(holdout and each playbook action at random); next: retention uplift "
                  f"--events {out_dir / 'events.parquet'} --actions {out_dir / 'actions.parquet'}")


@app.command("demo")
@clean_errors
def demo_cmd(
    home: Annotated[Path | None, typer.Option(help="working directory (default RETENTION_HOME)")] = None,
    customers: Annotated[int | None, typer.Option(min=50, help="synthetic customers")] = None,
    encoder_examples: Annotated[int, typer.Option(min=100, help="snapshots the encoder trains on")] = 3000,
    explain: Annotated[int, typer.Option(min=0, help="explain the N customers most at risk")] = 3,
    serve: Annotated[bool, typer.Option(help="end by serving the API and the chat page")] = True,
    host: Annotated[str, typer.Option(help="bind address of the service")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the service")] = 8000,
) -> None:
    """The main job on embedded defaults: demo data, train and evaluate the model, explain the
    riskiest customers, then serve the API and the agents' chat page on the demo data."""
    settings = Settings(home=home) if home else Settings()
    home = settings.home
    n = customers or settings.demo_customers
    data_dir = home / "demo"
    events_path = data_dir / "events.parquet"
    if not events_path.exists():
        demo_data_cmd(out_dir=data_dir, customers=n, seed=settings.seed, days=730)
    frame, report = load_events(events_path)
    print_report(report)
    # A budget that trains in minutes on 2 CPU cores; `retention train` has the full options.
    config = EvaluateConfig(lora=LoraConfig(max_tokens=128, epochs=1, seed=settings.seed),
                            encoder_max_examples=encoder_examples)
    root = home / "models"
    with progress_bar(None, "training and evaluating") as tracker:
        config.step_progress = tracker.steps
        # The demo publishes the backtest fit: the refit on the newest cutoffs (what `retention
        # train` does for production) would double its time on 2 CPU cores.
        version, result = train(frame, config, root, dataset="demo", progress=tracker,
                                refit_published=False)
    report_path = write_text_atomic(json.dumps(result, indent=2),
                                    home / "reports" / "demo_evaluation.json")
    cli_model.print_table(result)
    cli_model.print_publication(root, version, result)
    out.print(f"model card: {root / 'versions' / version / 'MODEL_CARD.md'}")
    out.print(f"report: {report_path}")
    cli_assistant.explain_top(frame, settings, root, explain, home / "reports")
    if serve:
        cli_service.serve_demo(settings, frame, host, port)


if __name__ == "__main__":  # pragma: no cover
    app()
