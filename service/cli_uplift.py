"""``retention uplift``: what each action did against the holdout, and whom to give what next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from assistant.experiment import default_policy
from assistant.playbook import Playbook
from finetune.labels import as_cutoff
from finetune.loaders import load_actions, output_format, write_events
from finetune.uplift import UpliftConfig, evaluate_uplift, recommendations
from service.cli_common import clean_errors, err, load_cli_events, out, print_report, progress_bar
from service.cli_model import Activity, Horizon, Kind, Lookback, MinPrior, _definition


def print_effects(report: dict) -> None:
    table = Table(show_header=True, header_style="bold")
    for col in ("action", "source", "n", "retained", "holdout", "uplift (95% CI)",
                "cost / kept", "measured"):
        table.add_column(col)
    for e in report["effects"]:
        ci = f"{100 * e['uplift']:+.1f} ({100 * e['ci_low']:.1f} to {100 * e['ci_high']:.1f})"
        kept = "-" if e["cost_per_kept"] is None else f"{e['cost_per_kept']:.1f}"
        table.add_row(e["action_id"], e["source"] + ("" if e["causal"] else " (not causal)"),
                      f"{e['n']:,}", f"{e['retained']:.1%}", f"{e['holdout_retained']:.1%}", ci,
                      kept, "yes" if e["measured"] and e["causal"] else "no")
    out.print(table)
    if report["qini"]:
        out.print("Qini (held-out customers): " + ", ".join(
            f"{a} {q:.3f}" for a, q in report["qini"].items()))
    if report["policy_value"]:
        out.print("share retained on held-out customers (inverse-propensity estimate): "
                  + ", ".join(f"{k} {v:.1%}" for k, v in report["policy_value"].items()))
    for rule in report.get("rules", []):
        out.print(f"policy: {rule}")


def register(app: typer.Typer) -> None:
    @app.command("uplift")
    @clean_errors
    def uplift_cmd(
        events: Annotated[Path, typer.Option(help="events file (.csv, .csv.gz, .parquet)")],
        actions: Annotated[Path, typer.Option(help="actions file: customer_id, ts, action_id, "
                                              "source[, channel, cost, agent]")],
        horizon: Horizon = 90,
        kind: Kind = "inactivity",
        lookback: Lookback = 365,
        activity: Activity = "order",
        min_prior: MinPrior = 1,
        min_sample: Annotated[int, typer.Option(
            min=1, help="customers per arm before an action counts as measured")] = 200,
        value: Annotated[float, typer.Option(
            min=0.0, help="what keeping one customer is worth, in the unit of 'cost'")] = 100.0,
        playbook: Annotated[Path | None, typer.Option(help="playbook YAML (action ids)")] = None,
        recommendations_path: Annotated[Path | None, typer.Option(
            "--recommendations", help="write one row per eligible customer (.csv/.parquet)")] = None,
        as_of: Annotated[str | None, typer.Option(
            help="date of the recommendations (default: the latest action date)")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="print JSON to stdout")] = False,
    ) -> None:
        """Per-action uplift against the randomised holdout (95% intervals, cost per customer
        kept), the Qini coefficient of the learned policy on held-out customers, and, with
        --recommendations, the best action (or none) for every eligible customer."""
        if recommendations_path is not None:
            output_format(recommendations_path)  # a bad path fails now, not after the fit
        book = Playbook.load(playbook)
        frame, _ = load_cli_events(events, None, None, None, None, False)
        acts, report = load_actions(actions, known_actions=set(book.actions))
        print_report(report)
        definition = _definition(kind, horizon, lookback, activity, min_prior)
        config = UpliftConfig(min_sample=min_sample, value_per_customer=value)
        with progress_bar(None, "estimating uplift"):
            result = evaluate_uplift(frame, acts, definition, config, default_policy(book))
        payload = {**result.to_dict(), "rules": result.model.rules()}
        if result.pending:
            err.print(f"{result.pending:,} action(s) are pending: their {horizon}-day window "
                      "runs past the end of the events")
        if recommendations_path is not None:
            day = as_cutoff(as_of) if as_of else as_cutoff(acts["ts"].max())
            recs = recommendations(result.model, frame, definition, day)
            write_events(recs, recommendations_path)
            counts = recs["action_id"].value_counts().to_dict()
            payload["recommendations"] = {"path": str(recommendations_path), "rows": len(recs),
                                          "as_of": day.date().isoformat(), "actions": counts}
            err.print(f"wrote {len(recs):,} recommendations to {recommendations_path}")
        if json_out:
            typer.echo(json.dumps(payload, default=_plain))
        else:
            print_effects(payload)


def _plain(value: object) -> object:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
