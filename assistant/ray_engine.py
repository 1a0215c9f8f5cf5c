"""Bulk scoring on Ray Data: the same partitions and the same per-partition code, many workers.

The driver partitions the events exactly as the local engine does (``assistant.stream``), then a
Ray Data pipeline maps partition paths through an actor pool: each actor loads the model once and
scores whole partitions, and the results are written as a Parquet dataset. Because a partition's
customers, batches and code are identical in both engines, the probabilities agree with the local
engine's (the tests hold them to 1e-6).

On an existing cluster (``--ray-address ray://head:10001`` or ``auto``) the work directory and
the output must be on storage every node can read (a shared filesystem), the model directory
too, and the nodes need this package installed (the same image, or a ``runtime_env``).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from assistant.scoring import Bands
from assistant.stream import (
    DEFAULT_BANDS,
    DEFAULT_CONFIG,
    OUTPUT_COLUMNS,
    Progress,
    ScoreSummary,
    StreamConfig,
    count_reused,
    load_for_scoring,
    load_previous,
    partition_events,
    score_partition,
)
from finetune.artifacts import resolve_version_dir
from finetune.labels import as_cutoff


class PartitionScorer:
    """A Ray Data actor: the model is loaded once per worker, then scores partition after partition."""

    def __init__(self, model_dir: str, config: dict, cutoff: str, bands: dict,
                 previous: str | None, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.config = StreamConfig(**config)
        self.model = load_for_scoring(Path(model_dir), self.config, device="auto")
        self.cutoff = pd.Timestamp(cutoff)
        self.bands = Bands(**bands)
        self.previous = load_previous(Path(previous) if previous else None,
                                      self.model.directory.name)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        frames = [score_partition(self.model, Path(p), self.cutoff, self.bands, self.config.kind,
                                  self.previous) for p in batch["part"]]
        out = pd.concat(frames, ignore_index=True)[OUTPUT_COLUMNS]
        return out.assign(customer_id=out["customer_id"].astype(str),
                          band=out["band"].astype(str), fingerprint=out["fingerprint"].astype(str),
                          model_version=out["model_version"].astype(str))


def score_file_ray(model_dir: Path, events: Path, out: Path,
                   cutoff: str | pd.Timestamp | None = None, config: StreamConfig = DEFAULT_CONFIG,
                   bands: Bands = DEFAULT_BANDS, previous: Path | None = None,
                   workdir: Path | None = None, progress: Progress | None = None,
                   address: str | None = None, workers: int = 2,
                   cpus_per_worker: float = 1.0) -> ScoreSummary:
    """Score with an actor pool of ``workers`` and write OUT as a directory of Parquet files."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError("the ray engine needs Ray: pip install 'retention-assistant[ray]'") from exc
    if workers < 1:
        raise ValueError("workers must be at least 1")
    work = workdir or out.with_name(out.name + ".work")
    tmp = out.with_name(out.name + ".tmp")
    started_here = False
    try:
        parted = partition_events(events, work, config, progress)
        when = as_cutoff(cutoff) if cutoff is not None else parted.cutoff
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            started_here = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"part": str(p.resolve())} for p in parted.parts])
        scored = ds.map_batches(
            PartitionScorer, batch_size=1, batch_format="pandas",
            fn_constructor_kwargs={
                "model_dir": str(model_dir.resolve()), "config": asdict(config),
                "cutoff": str(when), "bands": {"medium": bands.medium, "high": bands.high},
                "previous": str(previous.resolve()) if previous else None,
                "threads": int(cpus_per_worker)},
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker)
        if tmp.exists():
            shutil.rmtree(tmp)
        scored.write_parquet(str(tmp.resolve()))
        _swap_in(tmp, out)
        result = pd.read_parquet(out, columns=["customer_id", "fingerprint"])
        prev = load_previous(previous, resolve_version_dir(model_dir).name)
        reused = count_reused(result, prev)
    finally:
        if started_here:
            ray.shutdown()
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ScoreSummary(out, when, len(result), parted.n_rows, len(parted.parts), reused, "ray")


def _swap_in(tmp: Path, out: Path) -> None:
    """Replace OUT (a file or a dataset directory) by the finished TMP directory."""
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    if out.exists():
        out.replace(old)
    tmp.replace(out)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
