"""Score customers with a trained model at an as-of date: probability, band, and what was read.

Scoring "now" means the cutoff is the day after the last event in the data, so the score uses
every event we have and nothing else; a past cutoff reproduces what the model would have said
then (point in time, like training).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from finetune.artifacts import TrainedModel
from finetune.features import compute_features
from finetune.labels import as_cutoff, data_bounds
from finetune.serialize import Serialized


class CustomerNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Bands:
    """Probability cut points; agents act on bands, CRMs may use the probability itself."""

    medium: float = 0.3
    high: float = 0.6

    def __post_init__(self) -> None:
        if not 0.0 < self.medium < self.high < 1.0:
            raise ValueError(f"bands need 0 < medium < high < 1, got {self.medium}, {self.high}")

    def of(self, p: float) -> str:
        return "high" if p >= self.high else "medium" if p >= self.medium else "low"


@dataclass
class ScoredCustomer:
    customer_id: str
    cutoff: pd.Timestamp
    probability: float
    band: str
    features: pd.Series  # the aggregates, named as in finetune.features.FEATURE_COLUMNS
    serialized: Serialized
    history: pd.DataFrame = field(repr=False)  # this customer's events before the cutoff

    @property
    def facts(self) -> dict[str, float]:
        """What playbook conditions are evaluated on."""
        return {**{k: float(v) for k, v in self.features.items()},
                "probability": self.probability}


def default_cutoff(events: pd.DataFrame) -> pd.Timestamp:
    """The day after the last event: 'now' for the data we have."""
    return data_bounds(events)[1]


@dataclass
class Scorer:
    model: TrainedModel
    bands: Bands = field(default_factory=Bands)
    kind: str = "hybrid"

    def predict(self, frame: pd.DataFrame) -> pd.Series:
        """Probabilities for snapshot rows that carry features and a ``text`` column."""
        return pd.Series(self.model.predict(frame, kind=self.kind), index=frame.index)

    def score(self, events: pd.DataFrame, cutoff: pd.Timestamp | str | None = None,
              customers: list[str] | None = None) -> pd.DataFrame:
        """customer_id, cutoff, probability, band (eligible customers when none are given)."""
        cutoff = as_cutoff(cutoff) if cutoff is not None else default_cutoff(events)
        if customers is not None:  # a customer with no history before the cutoff has no score
            before = set(events.loc[events["ts"] < cutoff, "customer_id"].astype(str))
            customers = [c for c in customers if c in before]
        frame, _ = self.model.snapshot(events, cutoff, customers)
        if frame.empty:
            return frame.assign(probability=[], band=[])[["customer_id", "cutoff", "probability",
                                                          "band"]]
        p = self.predict(frame)
        return frame.assign(probability=p, band=[self.bands.of(x) for x in p])[
            ["customer_id", "cutoff", "probability", "band"]]

    def customer(self, events: pd.DataFrame, customer_id: str,
                 cutoff: pd.Timestamp | str | None = None) -> ScoredCustomer:
        cutoff = as_cutoff(cutoff) if cutoff is not None else default_cutoff(events)
        mine = events[(events["customer_id"] == customer_id) & (events["ts"] < cutoff)]
        if mine.empty:
            raise CustomerNotFound(f"customer {customer_id!r} has no events before "
                                   f"{cutoff.date()}")
        frame, serialized = self.model.snapshot(mine, cutoff, [customer_id])
        p = float(self.predict(frame).iloc[0])
        feats = frame.iloc[0][list(self.model.config["features"])]
        return ScoredCustomer(customer_id, cutoff, p, self.bands.of(p), feats, serialized[0], mine)

    def variants(self, scored: ScoredCustomer, drop_sets: list[set[str]]) -> list[float]:
        """Probability with each set of segments removed (one batch through the model).

        A removed event leaves the history (features and text change, as if it never happened);
        a removed header fact leaves the text only, since facts are derived from the events. If
        removing events would leave no history at all, they are removed from the text only.
        """
        cid, cutoff, hist = scored.customer_id, scored.cutoff, scored.history
        parts, ids, fact_drops = [], [], []
        for k, drops in enumerate(drop_sets):
            gone = {s.removeprefix("event:") for s in drops if s.startswith("event:")}
            kept = hist[~hist["event_id"].astype(str).isin(gone)]
            text_only = {s for s in drops if s.startswith("fact:")}
            if kept.empty:
                kept, text_only = hist, set(drops)
            vid = f"{cid}\x1f{k}"
            parts.append(kept.assign(customer_id=vid))
            ids.append(vid)
            fact_drops.append(text_only)
        ev = pd.concat(parts, ignore_index=True)
        ev["customer_id"] = ev["customer_id"].astype("string")
        feats = compute_features(ev, cutoff, ids, self.model.definition).reset_index()
        feats.insert(1, "cutoff", cutoff)
        serialized = self.model.serializer.serialize_snapshots(ev, feats)
        texts = [s.without(drop) for s, drop in zip(serialized, fact_drops)]
        return self.predict(feats.assign(text=texts)).tolist()
