"""Score every customer in an events file a slice of customers at a time, so memory stays flat.

A daily rescore reads millions of events; loading them all (plus features and serialized texts)
would need memory in proportion to the platform. Instead the file is read once in record batches
and each batch's rows are validated (errors name the file's own row numbers) and appended to one
of K partition files by a stable hash of the customer id: every customer's whole history lands in
one partition, so each partition scores on its own with the normal point-in-time code. The local
engine scores partitions one after the other; the Ray engine (``assistant.ray_engine``) hands
them to an actor pool. Either way results go to a temporary file renamed into place at the end.

Re-scoring at the same cutoff (after events arrived for a few customers) can pass the previous
output: customers whose snapshot fingerprint (serialized text, aggregates and model version) is
unchanged keep their probability without a model pass.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from assistant.scoring import Bands
from finetune.artifacts import SCORING_KINDS, TrainedModel
from finetune.contract import DataError, validate_events
from finetune.labels import as_cutoff

MAX_OPEN = 256  # partition files open at once while splitting
OUTPUT_COLUMNS = ["customer_id", "cutoff", "probability", "band", "fingerprint", "model_version"]
Progress = Callable[[int, int, str], None]

PARTITION_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("ts", pa.timestamp("ns", tz="UTC")), ("event", pa.string()),
    ("amount", pa.float64()), ("quantity", pa.float64()), ("order_id", pa.string()),
    ("item", pa.string()), ("rating", pa.float64()), ("text", pa.string()),
    ("event_id", pa.string()),
])


@dataclass(frozen=True)
class StreamConfig:
    """How a bulk scoring run is cut up; none of it changes a probability in fp32."""

    chunk_customers: int = 2000  # customers per partition: the unit of memory and of work
    read_rows: int = 250_000  # rows per record batch read from the input
    kind: str = "served"
    # fp32 reproduces the API exactly. int8 (CPU) is about twice as fast on the encoder but moved
    # a demo model's probability by up to 0.149 (bench/score_throughput.py): ranking only.
    precision: str = "fp32"
    batch_size: int | None = None  # encoder batch; None: 64 on CPU, 512 on a GPU

    def __post_init__(self) -> None:
        if self.chunk_customers < 1 or self.read_rows < 1:
            raise ValueError("chunk_customers and read_rows must be at least 1")
        if self.kind not in SCORING_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SCORING_KINDS)}, got {self.kind!r}")
        if self.precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be fp32 or int8, got {self.precision!r}")


DEFAULT_CONFIG = StreamConfig()
DEFAULT_BANDS = Bands()


@dataclass
class Partitioned:
    parts: list[Path]
    cutoff: pd.Timestamp
    n_rows: int
    n_customers: int


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise DataError(str(path), "path", [], "an existing events file")
    if path.suffix.lower() not in (".parquet", ".pq"):
        raise DataError(str(path), "path", [], "a Parquet events file for bulk scoring "
                        "(convert a CSV once with `retention import` or pandas)")
    try:
        return pq.ParquetFile(path)
    except pa.ArrowException as exc:
        raise DataError(str(path), "file", [], "a readable Parquet file", str(exc)) from exc


def _scan(path: Path) -> tuple[int, pd.Timestamp | None]:
    """Distinct customers and the latest timestamp, reading two columns only (the distinct ids
    are kept as an Arrow array: about 16 bytes per customer)."""
    import pyarrow.compute as pc

    file = _open_parquet(path)
    seen = pa.array([], type=pa.string())
    latest = None
    for batch in file.iter_batches(columns=["customer_id", "ts"], batch_size=1_000_000):
        frame = batch.to_pandas()
        frame = frame[frame["customer_id"].notna()]  # validation drops these rows too
        ids = pa.array(frame["customer_id"].astype(str).str.strip(), type=pa.string())
        seen = pc.unique(pa.concat_arrays([seen, pc.unique(ids)]))
        ts = pd.to_datetime(frame["ts"], utc=True, errors="coerce").max()
        latest = ts if latest is None or (pd.notna(ts) and ts > latest) else latest
    return len(seen), latest


def partition_of(customer_ids: pd.Series, n_parts: int) -> np.ndarray:
    """Stable across runs, machines and engines (pandas' hash has a fixed key)."""
    hashed = pd.util.hash_array(customer_ids.astype(str).to_numpy(dtype=object))
    return (hashed % np.uint64(n_parts)).astype(np.int64)


def partition_events(path: Path, workdir: Path, config: StreamConfig,
                     progress: Progress | None = None) -> Partitioned:
    """Validate the file batch by batch and split it into per-customer-hash Parquet files."""
    file = _open_parquet(path)
    missing = [c for c in ("customer_id", "ts", "event") if c not in file.schema_arrow.names]
    if missing:
        raise DataError(str(path), missing[0], [], f"a column named '{missing[0]}'")
    n_customers, latest = _scan(path)
    n_parts = max(1, math.ceil(n_customers / config.chunk_customers))
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    parts = [workdir / f"part-{k:05d}.parquet" for k in range(n_parts)]
    written: set[int] = set()
    n_rows = 0
    total = file.metadata.num_rows
    # At most MAX_OPEN partition files are open at once: with more partitions (tens of millions
    # of customers) the input is read once per group of MAX_OPEN partitions.
    for first in range(0, n_parts, MAX_OPEN):
        last = min(first + MAX_OPEN, n_parts)
        writers: dict[int, pq.ParquetWriter] = {}
        offset = 0
        try:
            for batch in file.iter_batches(batch_size=config.read_rows):
                raw = batch.to_pandas()
                clean, _ = validate_events(raw, str(path), row_offset=offset + 1)
                offset += len(raw)
                clean = clean.assign(event=clean["event"].astype(str))
                keys = partition_of(clean["customer_id"], n_parts)
                for k, rows in clean.groupby(keys, sort=True):
                    if not first <= k < last:
                        continue
                    table = pa.Table.from_pandas(rows[PARTITION_SCHEMA.names],
                                                 schema=PARTITION_SCHEMA, preserve_index=False)
                    if k not in writers:
                        writers[k] = pq.ParquetWriter(parts[k], PARTITION_SCHEMA)
                    writers[k].write_table(table)
                    n_rows += len(rows)
                if progress:
                    progress(offset + first // MAX_OPEN * total,
                             total * math.ceil(n_parts / MAX_OPEN), "partitioning")
        finally:
            for w in writers.values():
                w.close()
        written |= set(writers)
    if latest is None or pd.isna(latest):
        raise DataError(str(path), "ts", [], "at least one event with a valid time")
    cutoff = (latest.tz_convert("UTC") if latest.tzinfo else latest.tz_localize("UTC"))
    cutoff = cutoff.normalize() + pd.Timedelta(days=1)
    return Partitioned([p for k, p in enumerate(parts) if k in written], cutoff, n_rows,
                       n_customers)


def fingerprints(frame: pd.DataFrame, feature_columns: list[str], version: str) -> list[str]:
    """What the model reads, hashed: equal fingerprints mean equal probabilities."""
    values = np.round(frame[feature_columns].to_numpy(dtype=np.float64, na_value=np.nan), 9)
    return [hashlib.sha1(f"{version}\x1f{t}\x1f".encode() + row.tobytes()).hexdigest()[:20]
            for t, row in zip(frame["text"], values)]


def score_partition(model: TrainedModel, part: Path, cutoff: pd.Timestamp, bands: Bands,
                    kind: str = "served", previous: dict[str, tuple[str, float]] | None = None
                    ) -> pd.DataFrame:
    """Scores of the eligible customers in one partition, reusing unchanged previous ones."""
    events, _ = validate_events(pq.read_table(part).to_pandas(), str(part))
    frame, _ = model.snapshot(events, cutoff)
    version = model.directory.name
    if frame.empty:
        return score_columns_empty()
    fps = fingerprints(frame, list(model.config["features"]), version)
    prob = np.full(len(frame), np.nan)
    if previous:
        for i, (cid, fp) in enumerate(zip(frame["customer_id"], fps)):
            old = previous.get(str(cid))
            if old is not None and old[0] == fp:
                prob[i] = old[1]
    todo = np.isnan(prob)
    if todo.any():
        prob[todo] = model.predict(frame[todo], kind=kind)
    return pd.DataFrame({
        "customer_id": frame["customer_id"].astype("string").to_numpy(),
        "cutoff": frame["cutoff"].to_numpy(),
        "probability": prob,
        "band": pd.array([bands.of(p) for p in prob], dtype="string"),
        "fingerprint": pd.array(fps, dtype="string"),
        "model_version": pd.array([version] * len(frame), dtype="string"),
    })


def load_previous(path: Path | None, version: str) -> dict[str, tuple[str, float]] | None:
    """customer -> (fingerprint, probability) from an earlier output of the same model."""
    if path is None or not path.exists():
        return None
    old = pd.read_parquet(path, columns=["customer_id", "fingerprint", "probability",
                                         "model_version"])
    old = old[old["model_version"] == version]
    return {str(c): (str(f), float(p)) for c, f, p in
            zip(old["customer_id"], old["fingerprint"], old["probability"])}


def count_reused(frame: pd.DataFrame, previous: dict[str, tuple[str, float]] | None) -> int:
    """Rows whose fingerprint equals the previous output's: their score was not recomputed."""
    if not previous:
        return 0
    return sum(1 for c, f in zip(frame["customer_id"], frame["fingerprint"])
               if previous.get(str(c), ("",))[0] == f)


def load_for_scoring(model_dir: Path, config: StreamConfig, device: str = "auto") -> TrainedModel:
    """The model with the bulk-scoring speed options applied."""
    model = TrainedModel.load(model_dir, device=device)
    enc = model.encoder.model
    assert enc is not None
    on_gpu = next(enc.model.parameters()).device.type == "cuda"  # type: ignore[union-attr]
    if config.precision == "int8" and not on_gpu:
        enc.quantize_int8()
    enc.score_batch_size = config.batch_size or (512 if on_gpu else 64)
    return model


def iter_scores(model: TrainedModel, parts: list[Path], cutoff: pd.Timestamp, bands: Bands,
                kind: str, previous: dict[str, tuple[str, float]] | None
                ) -> Iterator[pd.DataFrame]:
    for part in parts:
        yield score_partition(model, part, cutoff, bands, kind, previous)


@dataclass
class ScoreSummary:
    out: Path
    cutoff: pd.Timestamp
    customers: int
    rows_read: int
    partitions: int
    reused: int
    engine: str

    def to_dict(self) -> dict:
        return {"out": str(self.out), "cutoff": str(self.cutoff.date()),
                "customers": self.customers, "rows_read": self.rows_read,
                "partitions": self.partitions, "reused": self.reused, "engine": self.engine}


def write_atomic(frames: Iterator[pd.DataFrame], out: Path,
                 on_part: Callable[[pd.DataFrame], None] | None = None) -> int:
    """Stream frames into OUT.tmp and rename: the old file or the whole new one, never half."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    schema = None
    n = 0
    writer = None
    try:
        for frame in frames:
            table = pa.Table.from_pandas(frame[OUTPUT_COLUMNS], preserve_index=False)
            if writer is None:
                schema = table.schema
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table.cast(schema))
            n += len(frame)
            if on_part:
                on_part(frame)
        if writer is None:  # nobody eligible: still an honest, empty, typed file
            empty = score_columns_empty()
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), tmp)
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
    tmp.replace(out)
    return n


def score_columns_empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
        OUTPUT_COLUMNS, ["string", "datetime64[ns, UTC]", "float64", "string", "string",
                         "string"])})


def score_file(model_dir: Path, events: Path, out: Path, cutoff: str | pd.Timestamp | None = None,
               config: StreamConfig = DEFAULT_CONFIG, bands: Bands = DEFAULT_BANDS,
               previous: Path | None = None, workdir: Path | None = None,
               progress: Progress | None = None, device: str = "auto") -> ScoreSummary:
    """The local engine: partitions scored one after the other in this process."""
    work = workdir or out.with_name(out.name + ".work")
    try:
        parted = partition_events(events, work, config, progress)
        when = as_cutoff(cutoff) if cutoff is not None else parted.cutoff
        model = load_for_scoring(model_dir, config, device)
        prev = load_previous(previous, model.directory.name)
        done = {"n": 0, "reused": 0, "parts": 0}

        def tick(frame: pd.DataFrame) -> None:
            done["parts"] += 1
            done["reused"] += count_reused(frame, prev)
            if progress:
                progress(done["parts"], len(parted.parts), "scoring")

        n = write_atomic(iter_scores(model, parted.parts, when, bands, config.kind, prev), out,
                         tick)
    finally:
        if workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return ScoreSummary(out, when, n, parted.n_rows, len(parted.parts), done["reused"], "local")
