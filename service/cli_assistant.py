"""CLI commands that use a model: index (the Chroma store) and explain (one customer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.panel import Panel

from assistant.explain import Assistant
from assistant.llm import LLMUnavailable
from assistant.playbook import Playbook
from assistant.retrieval import ContextStore
from assistant.schema import Explanation
from finetune.loaders import write_text_atomic
from service import wiring
from service.cli_common import clean_errors, err, load_cli_events, out, progress_bar
from service.settings import Settings

Events = Annotated[Path, typer.Option(help="events file (.csv, .csv.gz, .parquet)")]
Store = Annotated[Path | None, typer.Option(help="Chroma directory (default RETENTION_CHROMA_PATH "
                                                 "or HOME/chroma)")]


def register(app: typer.Typer) -> None:
    app.command("index")(index_cmd)
    app.command("explain")(explain_cmd)
    app.command("report")(report_cmd)


@clean_errors
def index_cmd(
    events: Events,
    store: Store = None,
    rebuild: Annotated[bool, typer.Option(help="drop the store and index everything again")] = False,
) -> None:
    """Build or refresh the Chroma store from events: only new or changed documents are embedded."""
    settings = Settings()
    frame, _ = load_cli_events(events, None, None, None, None, False)
    playbook = Playbook.load(settings.playbook)
    path = store or settings.store_path
    context = ContextStore(path)
    with progress_bar(None, "indexing customer documents") as tracker:
        if rebuild:
            counts = context.rebuild(frame, playbook)
        else:
            counts = context.index_events(frame, progress=lambda d, t: tracker.steps(d, t, "embedded"))
            counts["playbook"] = context.index_playbook(playbook)
    err.print(f"{path}: {counts['documents']:,} documents ({counts['embedded']:,} embedded, "
              f"{counts['unchanged']:,} unchanged), {counts['playbook']} playbook entries")


def render(x: Explanation) -> None:
    by_id = {e.id: e for e in x.evidence}
    colour = {"high": "red", "medium": "yellow", "low": "green"}[x.risk.band]
    lines = [(f"[bold {colour}]{x.risk.band.upper()}[/] churn risk "
             f"{100 * x.risk.probability:.0f}% as of {x.risk.cutoff}"), ""]
    lines.append("[bold]Why[/]" if x.language == "en" else "[bold]原因[/]")
    for i, r in enumerate(x.reasons, 1):
        lines.append(f" {i}. {r.text}")
        for eid in r.evidence:
            if eid in by_id:
                lines.append(f"    [dim]\\[{eid}] {by_id[eid].text}[/]")
    lines += ["", "[bold]What to do[/]" if x.language == "en" else "[bold]建议措施[/]"]
    for a in x.actions:
        lines.append(f" - [bold]{a.playbook_id}[/] ({a.channel}, {a.cost} cost): {a.text}")
        lines.append(f"   [dim]{a.why}[/]")
    note = ("worded from the customer's records" if x.backend == "none" or x.fallback
            else f"worded by the LLM ({x.backend}), checked against the records")
    if x.fallback:
        note += f" (the LLM's draft failed its checks: {x.fallback_reason})"
    else:
        parts = [f"{len(x.dropped)} LLM item(s) removed by the checks"] if x.dropped else []
        parts += [f"{len(x.added)} reason(s) from the records for a driver the LLM left out"
                  ] if x.added else []
        note += f" ({'; '.join(parts)})" if parts else ""
    out.print(Panel("\n".join(lines), title=f"customer {x.customer_id}", subtitle=note,
                    expand=False), highlight=False)


def explain_top(events: pd.DataFrame, settings: Settings, model_root: Path, n: int,
                reports: Path) -> None:
    """The demo's last step: explain the n customers most at risk now, with the configured LLM."""
    if n <= 0:
        return
    try:
        helper = wiring.assistant(settings, model_root)
    except LLMUnavailable as exc:
        err.print(f"[yellow]warning:[/] {exc}; explaining with the deterministic wording")
        helper = wiring.assistant(settings, model_root, backend="none")
    scores = helper.scorer.score(events).sort_values("probability", ascending=False)
    picked = scores["customer_id"].head(n).tolist()
    assert helper.store is not None
    helper.store.index_events(events[events["customer_id"].isin(picked)])
    helper.store.index_playbook(helper.playbook)
    results = []
    for cid in picked:
        with progress_bar(None, f"explaining {cid} ({helper.backend} LLM)"):
            x = helper.explain(events, cid)
        render(x)
        results.append(x.model_dump(mode="json"))
    path = write_text_atomic(json.dumps(results, indent=2, ensure_ascii=False),
                             reports / "demo_explanations.json")
    out.print(f"explanations: {path}")


def _events_and_assistant(events: Path, model: Path | None, backend: str | None,
                          store: Path | None) -> tuple[pd.DataFrame, Assistant]:
    settings = Settings()
    if store is not None:
        settings.chroma_path = store
    frame, _ = load_cli_events(events, None, None, None, None, False)
    with progress_bar(None, "loading the model"):
        return frame, wiring.assistant(settings, model, backend)


@clean_errors
def explain_cmd(
    events: Events,
    customer: Annotated[str, typer.Option(help="customer id")],
    model: Annotated[Path | None, typer.Option(help="model root or version (default HOME/models)")] = None,
    lang: Annotated[str, typer.Option(help="en or zh")] = "en",
    backend: Annotated[str | None, typer.Option(help="local, small, openai or none "
                                                      "(default RETENTION_LLM_BACKEND)")] = None,
    cutoff: Annotated[str | None, typer.Option(help="as-of date (default: day after the data)")] = None,
    store: Store = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the explanation as JSON")] = False,
) -> None:
    """Why this customer may leave and what to do, every claim citing its evidence."""
    frame, helper = _events_and_assistant(events, model, backend, store)
    if helper.store is not None:
        # Keep the store current for this customer: only new or changed events are embedded.
        helper.store.index_events(frame[frame["customer_id"] == customer])
    with progress_bar(None, f"explaining {customer}"):
        x = helper.explain(frame, customer, lang=lang, cutoff=cutoff)
    if as_json:
        print(x.model_dump_json(indent=2))
    else:
        render(x)


@clean_errors
def report_cmd(
    events: Events,
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the report files")],
    model: Annotated[Path | None, typer.Option(help="model root or version (default HOME/models)")] = None,
    top: Annotated[int, typer.Option(min=0, help="customers with a full card")] = 20,
    lang: Annotated[str, typer.Option(help="en or zh")] = "en",
    backend: Annotated[str | None, typer.Option(help="LLM for the cards: local, small, openai, "
                                                      "none (default RETENTION_LLM_BACKEND)")] = None,
    cutoff: Annotated[str | None, typer.Option(help="as-of date (default: day after the data)")] = None,
    store: Store = None,
) -> None:
    """Score and explain every eligible customer: HTML report plus CSV and Parquet for a CRM.

    A killed run resumes where it stopped (finished customers are kept in OUT/.work)."""
    from service.reports import ReportConfig, run_report

    frame, helper = _events_and_assistant(events, model, backend, store)
    with progress_bar(None, "scoring and explaining") as tracker:
        paths = run_report(helper, frame, out_dir, ReportConfig(top_n=top, lang=lang, cutoff=cutoff),
                           progress=lambda d, t: tracker.steps(d, t, "customers"))
    for kind, path in paths.items():
        out.print(f"{kind}: {path}")
