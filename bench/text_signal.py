"""Does the customers' own text predict churn beyond the aggregates, out of time?

Independent of the LoRA encoder: a logistic regression on the aggregates alone against the same
plus (a) TF-IDF of each snapshot's last reviews/tickets or (b) frozen, mean-pooled MiniLM
embeddings of them. Trained on the fit cutoffs whose label windows end by the validation cutoff
and scored on the validation cutoff (a purged split: no label window is shared, the test cutoff
is never read). The same models scored with the unpurged fit rows show how far overlapping label
windows flatter a model that can recognise customers by their words.

    .venv/bin/python bench/text_signal.py --events amazon.parquet --activity review --min-prior 5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from finetune.features import FEATURE_COLUMNS
from finetune.labels import DAY, ChurnDefinition, plan_backtest
from finetune.loaders import load_events
from finetune.snapshots import backtest_snapshots

TEXT_EVENTS = ("review", "ticket", "cancel")


def last_texts(events: pd.DataFrame, snaps: pd.DataFrame, last: int) -> list[list[int]]:
    """Row numbers (into the text events) of each snapshot's ``last`` texts before its cutoff."""
    by = {cid: frame for cid, frame in events.groupby("customer_id", observed=True)}
    out = []
    for cid, cutoff in zip(snaps["customer_id"], snaps["cutoff"]):
        frame = by.get(cid)
        out.append([] if frame is None else frame.loc[frame["ts"] < cutoff, "row"].tail(last).tolist())
    return out


def embed(texts: list[str], encoder: str) -> np.ndarray:
    """Frozen mean-pooled, normalised sentence embeddings (no fine-tuning: pretrained meaning)."""
    import torch

    from finetune.encoders import load_backbone, load_tokenizer

    tok, model = load_tokenizer(encoder), load_backbone(encoder).eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(texts), 64):
            enc = tok(texts[i:i + 64], padding=True, truncation=True, max_length=128,
                      return_tensors="pt")
            hidden, mask = model(**enc).last_hidden_state, enc["attention_mask"].unsqueeze(-1)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            parts.append(torch.nn.functional.normalize(pooled, dim=1).numpy())
    return np.vstack(parts)


def auc(train: np.ndarray, test: np.ndarray, y: np.ndarray, blocks: list, c: float) -> float:
    """LR on the aggregates (+ each block's train/test matrices), scored on ``test`` rows."""
    a, b = [], []
    for block in blocks:
        a.append(csr_matrix(block[0]) if isinstance(block[0], np.ndarray) else block[0])
        b.append(csr_matrix(block[1]) if isinstance(block[1], np.ndarray) else block[1])
    model = LogisticRegression(C=c, max_iter=3000).fit(hstack(a).tocsr(), y[train])
    return round(float(roc_auc_score(y[test], model.predict_proba(hstack(b).tocsr())[:, 1])), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument("--activity", default="order")
    ap.add_argument("--min-prior", type=int, default=1)
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--last", default="1,3,5", help="how many latest texts per snapshot")
    ap.add_argument("--c", default="0.1,1.0", help="inverse L2 strengths to report")
    args = ap.parse_args()

    events = load_events(args.events)[0]
    definition = ChurnDefinition(horizon=args.horizon, activity_events=(args.activity,),
                                 min_prior=args.min_prior)
    plan = plan_backtest(events, definition)
    snaps = backtest_snapshots(events, plan, definition)
    snaps = snaps[snaps["split"] != "test"].reset_index(drop=True)  # the test cutoff is not read
    val = (snaps["split"] == "val").to_numpy()
    purged = ((snaps["split"] == "fit") & (snaps["cutoff"] <= plan.val_cutoffs[0]
                                           - args.horizon * DAY)).to_numpy()
    unpurged = (snaps["split"] == "fit").to_numpy()
    y = snaps["label"].to_numpy()
    raw = snaps[list(FEATURE_COLUMNS)].to_numpy(np.float64)
    agg = np.nan_to_num(np.sign(raw) * np.log1p(np.abs(raw)))

    said = events[events["event"].isin(TEXT_EVENTS) & events["text"].notna()].sort_values(
        "ts", kind="stable")
    said = said.assign(row=np.arange(len(said)))
    vectors = embed(said["text"].astype(str).tolist(), args.encoder)
    lasts = [int(x) for x in args.last.split(",")]
    cs = [float(x) for x in args.c.split(",")]
    result: dict = {"events": str(args.events), "val_cutoff": str(plan.val_cutoffs[0].date()),
                    "n_train_purged": int(purged.sum()), "n_train_unpurged": int(unpurged.sum()),
                    "n_val": int(val.sum()), "val_churn_rate": round(float(y[val].mean()), 4),
                    "n_texts": len(said), "runs": []}
    for last in lasts:
        rows = last_texts(said, snaps, last)
        docs = np.array([" ".join(said["text"].iloc[r].astype(str)) for r in rows], dtype=object)
        mean_vec = np.vstack([vectors[r].mean(0) if r else np.zeros(vectors.shape[1])
                              for r in rows])
        for train_name, train in (("purged", purged), ("unpurged", unpurged)):
            scale = StandardScaler().fit(agg[train])
            base = (scale.transform(agg[train]), scale.transform(agg[val]))
            tfidf = TfidfVectorizer(min_df=5, max_features=20000, sublinear_tf=True,
                                    ngram_range=(1, 2)).fit(docs[train])
            words = (tfidf.transform(docs[train]), tfidf.transform(docs[val]))
            escale = StandardScaler().fit(mean_vec[train])
            emb = (escale.transform(mean_vec[train]), escale.transform(mean_vec[val]))
            for c in cs:
                result["runs"].append({
                    "last_texts": last, "train": train_name, "C": c,
                    "aggregates": auc(train, val, y, [base], c),
                    "aggregates_tfidf": auc(train, val, y, [base, words], c),
                    "aggregates_embeddings": auc(train, val, y, [base, emb], c)})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
