"""The actions table (what was done to whom, and when) and each action's outcome.

Actions are the second input a retention team has, beside events: a row per action an agent or a
campaign took, or per customer deliberately left alone (``holdout``). Validation lives here, at
the edge, like the events contract, and says which row and field is wrong.

The outcome of an action is never typed in: it is derived from the events with the same churn
definition as the model. A customer is *retained* when an activity event (an order, by default)
happens after the action and within the horizon; under the explicit definition, when no ``cancel``
does. Only events strictly after the action's time and before its time plus the horizon are read,
so an outcome cannot leak what happened before the action, and an action whose window the data do
not cover yet has no outcome (it is pending, not a guess).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from finetune.contract import (
    MAX_LISTED_ROWS,
    DataError,
    ValidationReport,
    _clean_id,
    _examples,
    _parse_ts,
)
from finetune.labels import DAY, ChurnDefinition, data_bounds

HOLDOUT = "holdout"  # the action id of a customer deliberately left alone (the control arm)
SOURCES: tuple[str, ...] = ("random", "agent", "campaign")
ACTION_REQUIRED: tuple[str, ...] = ("customer_id", "ts", "action_id", "source")
ACTION_OPTIONAL: dict[str, str] = {
    "channel": "string",
    "cost": "a number >= 0 (what the action cost the shop)",
    "agent": "string (who did it)",
    "action_ref": "string, unique (derived from the row's content when absent)",
}
ACTION_COLUMNS: tuple[str, ...] = ACTION_REQUIRED + tuple(ACTION_OPTIONAL)
ACTION_ID_PATTERN = r"^[a-z][a-z0-9_]{2,40}$"  # the playbook's id rule


def _rows(mask: np.ndarray, offset: int) -> list[int]:
    return [int(i) + offset for i in np.flatnonzero(mask)[:MAX_LISTED_ROWS]]


def validate_actions(df: pd.DataFrame, source: str = "actions", *, row_offset: int = 1,
                     row_label: str = "row", known_actions: set[str] | None = None
                     ) -> tuple[pd.DataFrame, ValidationReport]:
    """The canonical, typed actions table sorted by customer and time, or a DataError.

    Unlike events, an action without a customer id is an error, not a guest checkout to drop:
    actions are few and deliberate, and a lost one biases every measurement. Exact duplicates
    (a double export) are dropped and counted. ``known_actions`` (the playbook's ids) makes an
    unknown action id an error too; ``holdout`` is always known.
    """
    report = ValidationReport(source=source, n_input=len(df))
    missing = [c for c in ACTION_REQUIRED if c not in df.columns]
    if missing:
        raise DataError(source, missing[0], [], f"a column named '{missing[0]}' (columns "
                        f"found: {', '.join(map(str, df.columns))}); the actions table needs "
                        + ", ".join(ACTION_REQUIRED))
    df = df.reset_index(drop=True)

    def fail(name: str, mask: np.ndarray, expected: str, values: pd.Series) -> None:
        if mask.any():
            raise DataError(source, name, _rows(mask, row_offset), expected,
                            _examples(values, mask), n_bad=int(mask.sum()), row_label=row_label)

    out = pd.DataFrame(index=df.index)
    out["customer_id"] = _clean_id(df["customer_id"])
    fail("customer_id", out["customer_id"].isna().to_numpy(), "a customer id", df["customer_id"])
    out["ts"] = _parse_ts(df["ts"])
    fail("ts", out["ts"].isna().to_numpy(), "a date/time such as '2025-03-01 10:00' (naive "
         "means UTC)", df["ts"])
    action = df["action_id"].astype("string").str.strip().str.lower()
    fail("action_id", ~action.str.fullmatch(ACTION_ID_PATTERN).fillna(False).to_numpy(),
         "a playbook action id (lowercase letters, digits, _) or 'holdout'", df["action_id"])
    if known_actions is not None:
        allowed = set(known_actions) | {HOLDOUT}
        fail("action_id", ~action.isin(sorted(allowed)).to_numpy(),
             "one of " + ", ".join(sorted(allowed)), df["action_id"])
    out["action_id"] = action
    src = df["source"].astype("string").str.strip().str.lower()
    fail("source", ~src.isin(SOURCES).fillna(False).to_numpy(),
         "one of " + ", ".join(SOURCES) + " (random: an experiment's assignment)", df["source"])
    out["source"] = src
    if "cost" in df.columns:
        raw = df["cost"]
        cost = pd.to_numeric(raw, errors="coerce")
        given = raw.notna() & (raw.astype("string").str.strip() != "")
        bad = ((cost.isna() & given) | (cost < 0) | ~np.isfinite(cost.fillna(0.0))).to_numpy()
        fail("cost", bad, "a number >= 0, or empty", raw)
        out["cost"] = cost.astype("float64")
    else:
        out["cost"] = np.nan
    for name in ("channel", "agent", "action_ref"):
        col = df[name].astype("string").str.strip() if name in df.columns else pd.Series(
            pd.NA, index=df.index, dtype="string")
        out[name] = col.mask(col == "")
    holdout_cost = (out["action_id"] == HOLDOUT) & (out["cost"].fillna(0.0) > 0)
    fail("cost", holdout_cost.to_numpy(), "no cost for 'holdout' (nothing was done)", df["cost"]
         if "cost" in df.columns else out["cost"])
    n_before = len(out)
    out = out.drop_duplicates()
    report.drop("exact duplicate", n_before - len(out))
    out = out.sort_values(["customer_id", "ts"], kind="stable").reset_index(drop=True)
    if not out.empty:
        content = out.drop(columns=["action_ref"]).astype("string").fillna("")
        derived = "a" + pd.Series(pd.util.hash_pandas_object(content, index=False).to_numpy(),
                                  index=out.index).map("{:016x}".format)
        out["action_ref"] = out["action_ref"].fillna(derived).astype("string")
        dup = out["action_ref"].duplicated(keep=False).to_numpy()
        if dup.any():
            raise DataError(source, "action_ref", [], "one row per action_ref",
                            _examples(out["action_ref"], dup), n_bad=int(dup.sum()),
                            row_label=row_label)
    report.n_output = len(out)
    return out[list(ACTION_COLUMNS)], report


def action_outcomes(events: pd.DataFrame, actions: pd.DataFrame, definition: ChurnDefinition,
                    data_end: pd.Timestamp | None = None) -> pd.Series:
    """1.0 = retained within the horizon after the action, 0.0 = not, NaN = window not covered.

    Reads only events with ``action ts < event ts < action ts + horizon``; ``data_end`` (default:
    the midnight after the newest event) decides which windows the data cover.
    """
    if actions.empty:
        return pd.Series([], dtype="float64", name="retained")
    end = data_end if data_end is not None else data_bounds(events)[1]
    horizon = definition.horizon * DAY
    kinds = (definition.activity_events if definition.kind == "inactivity" else ("cancel",))
    hits = events.loc[events["event"].isin(kinds), ["customer_id", "ts"]]
    acts = actions[["customer_id", "ts"]].reset_index(drop=True).rename(columns={"ts": "at"})
    acts["row"] = np.arange(len(acts))
    pairs = acts.merge(hits, on="customer_id", how="inner")
    inside = pairs[(pairs["ts"] > pairs["at"]) & (pairs["ts"] < pairs["at"] + horizon)]
    hit = np.zeros(len(acts), dtype=bool)
    hit[inside["row"].unique()] = True
    retained = hit if definition.kind == "inactivity" else ~hit
    covered = (acts["at"] + horizon <= end).to_numpy()
    out = np.where(covered, retained.astype("float64"), np.nan)
    return pd.Series(out, index=actions.index, name="retained")


def action_cutoffs(actions: pd.DataFrame) -> pd.Series:
    """The snapshot an action was taken on: the midnight of its day (history strictly before).

    Events of the action's own day are left out of its features, so nothing the action caused
    can be in them.
    """
    return actions["ts"].dt.floor("D")
