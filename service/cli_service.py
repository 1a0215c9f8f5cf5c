"""CLI commands for the HTTP service: serve, API keys, and loading events into its database."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from finetune.loaders import load_events
from service import db
from service.cli_common import clean_errors, err, out, print_report, progress_bar
from service.settings import Settings

keys_app = typer.Typer(help="API keys: create (shown once, stored hashed), list, rotate, "
                       "revoke.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("load")(load_cmd)
    app.command("rescore")(rescore_cmd)
    app.command("forget")(forget_cmd)
    app.add_typer(keys_app, name="keys")


@clean_errors
def serve_cmd(host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
              port: Annotated[int, typer.Option(help="port")] = 8000,
              workers: Annotated[int, typer.Option(min=1, help="worker processes")] = 1) -> None:
    """Start the API (and the agents' chat page) with settings from RETENTION_* / .env."""
    import uvicorn

    from service.api.services import Services

    settings = Settings()
    Services.check(settings)  # refuse bad settings with one line, before the server starts
    err.print(f"serving on http://{host}:{port}  (API docs: /docs, chat page: /)")
    err.print(f"database {settings.db_url}; model {settings.model_dir or settings.models_path}")
    uvicorn.run("service.api.app:create_app", factory=True, host=host, port=port,
                workers=workers, log_level="info")


def chat_link(host: str, port: int, key: str) -> str:
    """The address the demo prints: the key rides in the fragment, which browsers never send."""
    return f"http://{host}:{port}/#key={key}"


def serve_demo(settings: Settings, events, host: str, port: int) -> None:
    """The main job's last step: the service on embedded defaults, with the demo data loaded.

    The demo data ends in the past, so the service's clock is ``data`` (the day after the
    newest event) unless RETENTION_AS_OF says otherwise: a customer silent for months is
    scored as silent for months."""
    import os

    import uvicorn

    from service.api.app import create_app

    if "RETENTION_AS_OF" not in os.environ:
        settings = settings.model_copy(update={"as_of": "data"})
    engine = db.engine_for(settings.db_url)
    with progress_bar(None, f"storing {len(events):,} events for the service"), \
            db.sessions(engine)() as session:
        db.upsert_events(session, events)
        key = db.create_key(session, "demo agent", "agent")
    engine.dispose()
    err.print("an 'agent' API key was created for the demo (stored hashed; this is the only copy)")
    out.print(f"chat page: {chat_link(host, port, key)}", highlight=False, soft_wrap=True)
    out.print(f"API docs:  http://{host}:{port}/docs   (stop with Ctrl-C)", highlight=False)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")


@clean_errors
def load_cmd(events: Annotated[Path | None, typer.Option(
                 help="events file (.csv, .csv.gz, .parquet)")] = None,
             actions: Annotated[Path | None, typer.Option(
                 help="actions file (customer_id, ts, action_id, source[, channel, cost, "
                 "agent])")] = None) -> None:
    """Store events and/or actions in the service's database (upsert by event id / action_ref;
    loading twice is harmless). Both files are validated before anything is stored."""
    if events is None and actions is None:
        raise ValueError("give --events FILE and/or --actions FILE")
    settings = Settings()
    frame = acts = None
    if events is not None:
        frame, report = load_events(events)
        print_report(report)
    if actions is not None:
        from assistant.playbook import Playbook
        from finetune.loaders import load_actions

        acts, report = load_actions(actions, known_actions=set(Playbook.load(
            settings.playbook).actions))
        print_report(report)
    engine = db.engine_for(settings.db_url)
    with progress_bar(None, "storing"), db.sessions(engine)() as session:
        if frame is not None:
            err.print(f"stored {db.upsert_events(session, frame):,} events in {settings.db_url}")
        if acts is not None:
            err.print(f"stored {db.upsert_actions(session, acts):,} actions in "
                      f"{settings.db_url}")


@keys_app.command("create")
@clean_errors
def keys_create(role: Annotated[str, typer.Option(help="crm, agent or admin")],
                name: Annotated[str, typer.Option(help="who or what uses it")],
                expires_days: Annotated[float | None, typer.Option(
                    "--expires-days", min=0.0, help="the key stops working after this many "
                    "days (default: never)")] = None) -> None:
    from datetime import timedelta

    settings = Settings()
    expires = db.now() + timedelta(days=expires_days) if expires_days is not None else None
    with db.sessions(db.engine_for(settings.db_url))() as session:
        key = db.create_key(session, name, role, expires_at=expires)
    until = f", valid until {expires:%Y-%m-%d %H:%M} UTC" if expires else ""
    err.print(f"created a '{role}' key for {name}{until}; it is shown once, store it now:")
    out.print(key, highlight=False)


@keys_app.command("rotate")
@clean_errors
def keys_rotate(key_id: Annotated[int, typer.Argument(help="id from `retention keys list`")],
                grace_hours: Annotated[float, typer.Option(
                    min=0.0, help="the old key keeps working this long (0: revoked now)")] = 0.0
                ) -> None:
    """Replace a key by a new one with the same name and role (shown once)."""
    settings = Settings()
    with db.sessions(db.engine_for(settings.db_url))() as session:
        row, key = db.rotate_key(session, key_id, grace=grace_hours * 3600)
    old = f"expires in {grace_hours:g} h" if grace_hours else "is revoked"
    err.print(f"key {key_id} {old}; its replacement is key {row.id}, shown once, store it now:")
    out.print(key, highlight=False)


@keys_app.command("list")
@clean_errors
def keys_list() -> None:
    """Id, prefix, role, name, state, expiry and last use of every key (never the key)."""
    settings = Settings()
    with db.sessions(db.engine_for(settings.db_url))() as session:
        for k in session.scalars(select(db.ApiKey).order_by(db.ApiKey.id)):
            state = ("revoked" if k.revoked else "expired" if db.key_expired(k) else "active")
            expires = f"{db._aware(k.expires_at):%Y-%m-%d %H:%M}" if k.expires_at else "never"
            used = f"{db._aware(k.last_used_at):%Y-%m-%d %H:%M}" if k.last_used_at else "never"
            out.print(f"{k.id}\tra_{k.prefix}_…\t{k.role}\t{k.name}\t{state}\t"
                      f"expires {expires}\tlast used {used}", highlight=False)


@clean_errors
def forget_cmd(customer: Annotated[str, typer.Option(help="the customer id to erase")],
               as_json: Annotated[bool, typer.Option("--json", help="print the report as "
                                                    "JSON")] = False) -> None:
    """Erase a customer from everything the service keeps under its home and in its
    database (events, scores, warnings, actions, Chroma, reports, work folders), then scan
    every file for what is left. Run it with the service stopped, or use
    DELETE /v1/customers/{id} on a running one (its Chroma store is open in the service).
    Exits 1 when anything still holds the customer."""
    import json

    from service.erasure import forget

    settings = Settings()
    engine = db.engine_for(settings.db_url)
    try:
        with db.sessions(engine)() as session:
            known = session.scalar(select(db.EventRow.customer_id).where(
                db.EventRow.customer_id == customer).limit(1))
        if known is None:
            err.print(f"note: no events are stored for {customer!r}; cleaning files anyway")
        import getpass

        report = forget(db.sessions(engine), customer, actor=f"cli ({getpass.getuser()})",
                        home=settings.home, store_path=settings.store_path)
    finally:
        engine.dispose()
    if as_json:
        out.print_json(json.dumps(report.to_dict()))
    else:
        rows = ", ".join(f"{n} {t}" for t, n in report.rows.items() if n)
        err.print(f"erased: {rows or 'no rows'}; {report.documents} Chroma document(s); "
                  f"{len(report.files_rewritten)} file(s) rewritten, "
                  f"{len(report.files_removed)} removed ({report.seconds:.1f} s)")
        for path in report.files_removed:
            err.print(f"  removed {path}")
    if report.remaining:
        err.print("error: these files still hold the customer: " + ", ".join(report.remaining))
        raise typer.Exit(1)


@keys_app.command("revoke")
@clean_errors
def keys_revoke(key_id: Annotated[int, typer.Argument(help="id from `retention keys list`")]) -> None:
    settings = Settings()
    with db.sessions(db.engine_for(settings.db_url))() as session:
        row = session.get(db.ApiKey, key_id)
        if row is None:
            raise ValueError(f"no API key with id {key_id}")
        row.revoked = True
        session.commit()
    err.print(f"revoked key {key_id}")


@clean_errors
def rescore_cmd(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="today, data or YYYY-MM-DD (default RETENTION_AS_OF)")] = None,
    force: Annotated[bool, typer.Option(help="rerun a date that already finished")] = False,
    deliver: Annotated[bool, typer.Option(help="deliver due warnings once after scoring "
                                               "(the service's sender retries the rest)")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Score every stored customer at the as-of date, keep the score history, and warn about
    each customer whose risk crossed the threshold upwards since their previous score (new
    events or silence). Streamed and resumable; twice for the same date changes nothing. For
    cron or a Kubernetes CronJob (or let the service do it daily: RETENTION_RESCORE_AT)."""
    import json

    from service.api.services import Services

    settings = Settings()
    if as_of is not None:
        settings = settings.model_copy(update={"as_of": as_of})
    services = Services(settings)
    try:
        with progress_bar(None, "rescoring") as tracker:
            summary = services.rescore_all(force=force, progress=tracker.steps)
        delivered = 0
        if deliver and services.sender is not None:
            while (n := services.sender.deliver_due()):
                delivered += n
    finally:
        services.stop()
    result = {**summary.to_dict(), "delivery_attempts": delivered}
    if as_json:
        out.print_json(json.dumps(result))
    elif summary.skipped:
        err.print(f"already rescored at {summary.as_of} with {summary.model_version}: "
                  f"{summary.customers:,} customers; nothing changed (--force reruns)")
    else:
        err.print(f"rescored {summary.customers:,} customers at {summary.as_of} "
                  f"({summary.model_version}); {summary.warnings:,} new warning(s)")
