"""``retention score``: bulk scoring of a whole events file, locally or on a Ray cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from assistant.scoring import Bands
from assistant.stream import StreamConfig, score_file
from service.cli_common import clean_errors, err, out, progress_bar
from service.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("score")(score_cmd)


@clean_errors
def score_cmd(
    events: Annotated[Path, typer.Option(help="events Parquet file (canonical columns)")],
    out_path: Annotated[Path, typer.Option("--out", help="scores: a Parquet file (local engine) "
                                                         "or a Parquet dataset directory (ray)")],
    model: Annotated[Path | None, typer.Option(help="model root or version (default HOME/models)")] = None,
    cutoff: Annotated[str | None, typer.Option(help="as-of date (default: day after the data)")] = None,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    precision: Annotated[str, typer.Option(help="fp32 (exactly what the API returns) or int8 "
                                                "(about 2x faster on CPU where the served model "
                                                "reads text; probabilities may differ, use for "
                                                "ranking only)")] = "fp32",
    chunk_customers: Annotated[int, typer.Option(min=1, help="customers per partition (memory)")] = 2000,
    batch_size: Annotated[int | None, typer.Option(min=1, help="encoder batch (default 64 CPU, "
                                                               "512 GPU)")] = None,
    previous: Annotated[Path | None, typer.Option(help="an earlier output at the same cutoff: "
                                                       "unchanged customers keep their score")] = None,
    ray_address: Annotated[str | None, typer.Option(help="existing Ray cluster (e.g. auto or "
                                                         "ray://head:10001); default: local")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray actors")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Score every eligible customer, streaming: memory depends on --chunk-customers, not on the
    file. The output appears only when complete (a temporary file is renamed into place)."""
    settings = Settings()
    bands = Bands(settings.band_medium, settings.band_high)
    config = StreamConfig(chunk_customers=chunk_customers, precision=precision,
                          batch_size=batch_size)
    model_dir = model or settings.model_dir or settings.models_path
    with progress_bar(None, "scoring") as tracker:
        if engine == "local":
            summary = score_file(model_dir, events, out_path, cutoff, config, bands, previous,
                                 progress=tracker.steps)
        elif engine == "ray":
            from assistant.ray_engine import score_file_ray

            summary = score_file_ray(model_dir, events, out_path, cutoff, config, bands, previous,
                                     progress=tracker.steps, address=ray_address, workers=workers)
        else:
            raise ValueError(f"engine must be local or ray, got {engine!r}")
    if as_json:
        out.print_json(json.dumps(summary.to_dict()))
    else:
        err.print(f"[green]scored[/] {summary.customers:,} customers at {summary.cutoff.date()} "
                  f"({summary.partitions} partitions, {summary.reused:,} unchanged and reused) "
                  f"-> {summary.out}", highlight=False)
