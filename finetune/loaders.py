"""Read a user's events from CSV, Parquet or SQL into the canonical table.

A column mapping lets an export with its own names (``CustomerID``, ``InvoiceDate``...) be read as
it is, and an event-value mapping turns its own event names (``purchase``) into ours (``order``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from finetune.contract import (
    EVENT_COLUMNS,
    DataError,
    ValidationReport,
    validate_customers,
    validate_events,
)


@dataclass
class ColumnMapping:
    """Canonical name -> source column, plus source event value -> canonical event type."""

    columns: dict[str, str] = field(default_factory=dict)
    event_values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, pairs: list[str] | None = None, file: str | Path | None = None) -> ColumnMapping:
        """From ``canonical=source`` pairs and/or a JSON file ``{"columns": {}, "event_values": {}}``."""
        mapping = cls()
        if file:
            data = json.loads(Path(file).read_text(encoding="utf-8"))
            mapping.columns.update(data.get("columns", {}))
            mapping.event_values.update(data.get("event_values", {}))
        for pair in pairs or []:
            if "=" not in pair:
                raise DataError("--map", pair, [], "canonical=source, e.g. customer_id=CustomerID")
            key, value = pair.split("=", 1)
            if key.startswith("event:"):
                mapping.event_values[value.strip()] = key[len("event:"):].strip()
            else:
                mapping.columns[key.strip()] = value.strip()
        unknown = [k for k in mapping.columns if k not in EVENT_COLUMNS]
        if unknown:
            raise DataError("column mapping", unknown[0], [],
                            "one of the canonical columns: " + ", ".join(EVENT_COLUMNS))
        return mapping

    def apply(self, df: pd.DataFrame, source: str) -> pd.DataFrame:
        absent = [src for src in self.columns.values() if src not in df.columns]
        if absent:
            raise DataError(source, absent[0], [], "a column of that name, as the mapping says "
                            f"(columns found: {', '.join(map(str, df.columns))})")
        renamed = df.rename(columns={src: dst for dst, src in self.columns.items()})
        if self.event_values and "event" in renamed.columns:
            renamed["event"] = renamed["event"].replace(self.event_values)
        return renamed


def _read_table(path: Path) -> tuple[pd.DataFrame, int, str]:
    """Return the raw frame, the offset from position to the user's row number, and its label."""
    if not path.exists():
        raise DataError(str(path), "path", [], "an existing file")
    suffixes = "".join(path.suffixes[-2:]).lower()
    if suffixes.endswith((".parquet", ".pq")):
        return pd.read_parquet(path), 1, "row"
    if any(suffixes.endswith(s) for s in (".csv", ".csv.gz", ".tsv", ".txt", ".csv.zip")):
        sep = "\t" if ".tsv" in suffixes else ","
        try:
            frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                                na_values=[""], encoding="utf-8-sig")
        except (UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise DataError(str(path), "file", [], "UTF-8 CSV with a header row",
                            str(exc)) from exc
        return frame, 2, "line"  # line 1 is the header
    raise DataError(str(path), "path", [], "a .csv, .csv.gz, .tsv or .parquet file")


def load_events(path: str | Path, mapping: ColumnMapping | None = None, *,
                drop_invalid: bool = False) -> tuple[pd.DataFrame, ValidationReport]:
    """Load and validate an events file; errors name the file, lines/rows and field."""
    path = Path(path)
    raw, offset, label = _read_table(path)
    raw = (mapping or ColumnMapping()).apply(raw, str(path))
    return validate_events(raw, str(path), drop_invalid=drop_invalid, row_offset=offset,
                           row_label=label)


def load_events_sql(url: str, query: str, mapping: ColumnMapping | None = None, *,
                    drop_invalid: bool = False) -> tuple[pd.DataFrame, ValidationReport]:
    """Load events with a SQL query through SQLAlchemy (``sqlite:///file.db`` works as is)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            raw = pd.read_sql(text(query), conn)
    finally:
        engine.dispose()
    source = f"{url.split('://', 1)[0]} query"
    raw = (mapping or ColumnMapping()).apply(raw, source)
    return validate_events(raw, source, drop_invalid=drop_invalid)


def load_actions(path: str | Path, known_actions: set[str] | None = None
                 ) -> tuple[pd.DataFrame, ValidationReport]:
    """Load and validate an actions file (``finetune.actions``); errors name lines and fields."""
    from finetune.actions import validate_actions

    path = Path(path)
    raw, offset, label = _read_table(path)
    return validate_actions(raw, str(path), row_offset=offset, row_label=label,
                            known_actions=known_actions)


def load_customers(path: str | Path, mapping: Mapping[str, str] | None = None) -> pd.DataFrame:
    path = Path(path)
    raw, _, _ = _read_table(path)
    if mapping:
        raw = raw.rename(columns={src: dst for dst, src in mapping.items()})
    return validate_customers(raw, str(path))


def output_format(out: str | Path) -> str:
    """"parquet" or "csv" from the path; callers check it before hours of work, not after."""
    name = Path(out).name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    raise DataError(str(out), "path", [], "an output path ending in .parquet or .csv")


def write_events(events: pd.DataFrame, out: str | Path) -> Path:
    """Write atomically (temp file then rename) so a failure never leaves half a file over a good one."""
    out = Path(out)
    kind = output_format(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if kind == "parquet":
        events.to_parquet(tmp, index=False)
    else:
        events.to_csv(tmp, index=False, compression="gzip" if out.suffix == ".gz" else None)
    tmp.replace(out)
    return out


def write_text_atomic(text: str, out: str | Path) -> Path:
    """Same promise as ``write_events``: the old file or the whole new one, never half."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out
