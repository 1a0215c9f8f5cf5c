"""Row caps that keep whole customers: one home for "at most N rows, sampled by customer".

A customer has a snapshot at every cutoff, and their labels share most of a horizon, so rows are
never sampled one by one: a sample that kept some of a customer's snapshots and dropped others
would let a model judged on the kept ones recognise them. Every cap in the pipeline (stacking and
calibration rows, what the encoder reads of validation, LightGBM's tuning rows) draws through
``cap_customers``, so one seed gives one sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def cap_customers(frame: pd.DataFrame, mask: np.ndarray, max_rows: int | None,
                  seed: int = 0) -> np.ndarray:
    """``mask`` thinned to at most ``max_rows`` rows by dropping whole customers at random.

    The stacking and calibration rows are scored by every base (the encoder too); past a few
    thousand rows the two or three weights they fit no longer move, while the encoder's cost
    grows with every row (#17: 240,089 fit snapshots, most of them scored for calibration)."""
    mask = np.asarray(mask, bool)
    if not max_rows or mask.sum() <= max_rows:
        return mask
    ids = frame.loc[mask, "customer_id"]
    counts = ids.value_counts().sample(frac=1.0, random_state=seed)
    keep = counts.index[: int(np.searchsorted(counts.cumsum().to_numpy(), max_rows,
                                              side="right"))]
    return mask & frame["customer_id"].isin(keep).to_numpy()
