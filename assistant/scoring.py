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
from finetune.serialize import FACT_FEATURES, Serialized


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
    kind: str = "served"

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
        return self.customers(events, [customer_id], cutoff)[0]

    def customers(self, events: pd.DataFrame, customer_ids: list[str],
                  cutoff: pd.Timestamp | str | None = None) -> list[ScoredCustomer]:
        """Several customers in one model pass (a report chunk), in the order given.

        Features and serialization are per customer, so each result equals scoring that
        customer alone (up to float rounding of a different batch)."""
        cutoff = as_cutoff(cutoff) if cutoff is not None else default_cutoff(events)
        mine = events[events["customer_id"].isin(customer_ids) & (events["ts"] < cutoff)]
        histories = dict(tuple(mine.groupby("customer_id", observed=True, sort=False)))
        for cid in customer_ids:
            if cid not in histories:
                raise CustomerNotFound(f"customer {cid!r} has no events before {cutoff.date()}")
        frame, serialized = self.model.snapshot(mine, cutoff, list(customer_ids))
        probs = self.predict(frame).to_numpy()
        feats = frame[list(self.model.config["features"])]
        return [ScoredCustomer(cid, cutoff, float(p), self.bands.of(float(p)), feats.iloc[i],
                               serialized[i], histories[cid])
                for i, (cid, p) in enumerate(zip(frame["customer_id"], probs))]

    def variants(self, scored: ScoredCustomer, drop_sets: list[set[str]],
                 reference: pd.Series | None = None) -> list[float]:
        """Probability with each set of segments removed (one batch through the model).

        A removed event leaves the history (features and text change, as if it never happened);
        a removed header fact leaves the text only, since facts are derived from the events. If
        removing events would leave no history at all, they are removed from the text only.
        """
        return self.variants_many([(scored, drop_sets)], reference)[0]

    def variants_many(self, requests: list[tuple[ScoredCustomer, list[set[str]]]],
                      reference: pd.Series | None = None) -> list[list[float]]:
        """``variants`` for several customers in one batch: a report chunk's attributions cost
        one feature pass, one serialization pass and length-sorted model batches in all.

        ``reference``: a removed header fact also sets the aggregates it states
        (``FACT_FEATURES``) to these values, so the trees no longer see it either."""
        parts, ids, fact_drops, cutoffs = [], [], [], []
        for n, (scored, drop_sets) in enumerate(requests):
            hist = scored.history
            for k, drops in enumerate(drop_sets):
                gone = {s.removeprefix("event:") for s in drops if s.startswith("event:")}
                kept = hist[~hist["event_id"].astype(str).isin(gone)]
                text_only = {s for s in drops if s.startswith("fact:")}
                if kept.empty:
                    kept, text_only = hist, set(drops)
                vid = f"{n}\x1f{scored.customer_id}\x1f{k}"
                parts.append(kept.assign(customer_id=vid))
                ids.append(vid)
                fact_drops.append(text_only)
                cutoffs.append(scored.cutoff)
        if not ids:
            return [[] for _ in requests]
        ev = pd.concat(parts, ignore_index=True)
        ev["customer_id"] = ev["customer_id"].astype("string")
        frames = []
        for cutoff in dict.fromkeys(cutoffs):  # one cutoff in practice; features are per cutoff
            at = [v for v, c in zip(ids, cutoffs) if c == cutoff]
            f = compute_features(ev, cutoff, at, self.model.definition).reset_index()
            f.insert(1, "cutoff", cutoff)
            frames.append(f)
        feats = pd.concat(frames, ignore_index=True).set_index("customer_id").loc[ids]
        feats = feats.reset_index()
        serialized = self.model.serializer.serialize_snapshots(ev, feats)
        texts = [s.without(drop) for s, drop in zip(serialized, fact_drops)]
        if reference is not None:
            for row, drop in enumerate(fact_drops):
                cols = [c for sid in drop if sid.startswith("fact:")
                        for c in FACT_FEATURES.get(sid.removeprefix("fact:"), ())]
                if cols:
                    feats.loc[row, cols] = reference[cols].to_numpy(dtype=float)
        probs = self.predict(feats.assign(text=texts)).tolist()
        out, start = [], 0
        for _, drop_sets in requests:
            out.append(probs[start:start + len(drop_sets)])
            start += len(drop_sets)
        return out
