"""Batch explanation reports: every eligible customer scored and explained, for analysts and CRMs.

Customers are processed in fixed chunks (sorted ids), each chunk written atomically to a work
folder, so a killed job resumes where it stopped without redoing finished customers and, because
chunk boundaries never move, produces the same files as an uninterrupted run. The final files
(HTML, CSV, Parquet) are written to temporary names and renamed: never left half-written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from jinja2 import Environment, PackageLoader, select_autoescape

from assistant import wording
from assistant.attributions import attribute_many
from assistant.drivers import group, top
from assistant.explain import Assistant
from assistant.scoring import default_cutoff
from finetune.actions import HOLDOUT
from finetune.labels import as_cutoff, churn_labels, data_bounds, eligible_customers
from finetune.loaders import write_text_atomic
from finetune.metrics import evaluate_predictions

CHUNK = 100


@dataclass
class ReportConfig:
    top_n: int = 20  # customers with a full card (reasons and actions)
    lang: str = "en"
    cutoff: str | None = None  # as-of date; default: the day after the data
    chunk: int = CHUNK


def _job_key(events: pd.DataFrame, model_dir: Path, config: ReportConfig, cutoff: str) -> str:
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(events[["event_id"]], index=False)
                  .to_numpy().tobytes())
    digest.update(json.dumps([str(model_dir), config.lang, cutoff, config.chunk]).encode())
    return digest.hexdigest()[:16]


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells a spreadsheet would run as a formula (``=HYPERLINK(...)`` in an id or a
    customer's words) get a leading apostrophe, as OWASP advises for CSV exports; numbers
    are left alone."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(lambda v: "'" + v if isinstance(v, str) and
                                    v.startswith(FORMULA_START) else v)
    return out


def _atomic_frame(frame: pd.DataFrame, path: Path, kind: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    if kind == "parquet":
        frame.to_parquet(tmp, index=False)
    else:
        neutralise_formulas(frame).to_csv(tmp, index=False)
    tmp.replace(path)


def score_chunk(helper: Assistant, events: pd.DataFrame, ids: list[str],
                cutoff: pd.Timestamp, checkpoint: Callable[[], None] | None = None,
                lang: str = "en") -> pd.DataFrame:
    """One batch for the chunk's scores and one for all their attributions (occlusion)."""
    rows = []
    if checkpoint is not None:
        checkpoint()  # an unfinished chunk is not saved: a rerun does it again
    all_scored = helper.scorer.customers(events, ids, cutoff)
    if checkpoint is not None:
        checkpoint()
    for scored, attrs in zip(all_scored, attribute_many(helper.scorer, all_scored)):
        cid = scored.customer_id
        grouped = group(scored, attrs)
        drivers = top(grouped)
        assignment = helper.assignment(scored)
        arm = assignment.arm if assignment is not None else "off"
        ranked = [] if arm == HOLDOUT else helper.ranked(scored, grouped, assignment)[:2]
        rows.append({"customer_id": cid, "probability": scored.probability, "band": scored.band,
                     "top_reasons": " | ".join(wording.reason_text(d, lang) for d in drivers),
                     "reason_kinds": ",".join(d.key for d in drivers),
                     "reason_evidence": ",".join(d.sid for d in drivers),
                     "action_ids": ",".join(r.action.id for r in ranked),
                     "action_evidence": " | ".join(r.evidence for r in ranked),
                     "experiment_arm": arm,
                     "orders": scored.features["frequency"],
                     "monetary": scored.features["monetary"],
                     "recency_days": scored.features["recency_days"]})
    return pd.DataFrame(rows)


class Interrupted(Exception):
    """The job was asked to stop; finished chunks are kept and a rerun resumes from them."""


def run_report(helper: Assistant, events: pd.DataFrame, out: Path, config: ReportConfig,
               progress: Callable[[int, int], None] | None = None,
               lock: AbstractContextManager | None = None,
               should_stop: Callable[[], bool] | None = None,
               previous: Callable[[list[str], str], dict[str, float]] | None = None
               ) -> dict[str, Path]:
    """``lock`` is held per chunk and per card, so a service keeps answering during a report;
    ``should_stop`` is asked between them, so a stopping service never waits for a report.
    ``previous(ids, as_of)``: each customer's stored score at the latest earlier date (the
    service's score history), for the "newly at risk" section and columns."""
    lock = lock or nullcontext()

    def checkpoint() -> None:
        if should_stop is not None and should_stop():
            raise Interrupted(f"report in {out} stopped; run it again to resume")

    cutoff = as_cutoff(config.cutoff) if config.cutoff else default_cutoff(events)
    model_dir = helper.scorer.model.directory
    # Only the ids: each chunk scores its customers itself, so no model pass is spent here.
    ids = sorted(eligible_customers(events, cutoff, helper.scorer.model.definition).astype(str))
    if not ids:
        raise ValueError(f"no customer is eligible at {cutoff.date()}: nothing to report")
    out.mkdir(parents=True, exist_ok=True)
    work = out / ".work" / _job_key(events, model_dir, config, cutoff.date().isoformat())
    work.mkdir(parents=True, exist_ok=True)
    chunks = [ids[i:i + config.chunk] for i in range(0, len(ids), config.chunk)]
    for n, chunk in enumerate(chunks):
        part = work / f"chunk_{n:05d}.parquet"
        if not part.exists():
            checkpoint()
            with lock:
                frame = score_chunk(helper, events, chunk, cutoff, checkpoint, config.lang)
            _atomic_frame(frame, part, "parquet")
        if progress:
            progress(min((n + 1) * config.chunk, len(ids)), len(ids))
    table = pd.concat([pd.read_parquet(work / f"chunk_{n:05d}.parquet")
                       for n in range(len(chunks))], ignore_index=True)
    table = table.sort_values(["probability", "customer_id"], ascending=[False, True],
                              kind="stable").reset_index(drop=True)
    cards = []
    for cid in table["customer_id"].head(config.top_n):
        checkpoint()
        with lock:
            cards.append(helper.explain(events, cid, lang=config.lang, cutoff=cutoff)
                         .model_dump(mode="json"))
    paths = {"csv": out / "risk_report.csv", "parquet": out / "risk_report.parquet",
             "html": out / "risk_report.html"}
    newly = None
    if previous is not None:
        before = previous(list(table["customer_id"]), cutoff.date().isoformat())
        high = helper.scorer.bands.high
        table["previous_probability"] = table["customer_id"].map(before).astype(float)
        table["newly_at_risk"] = (table["probability"] >= high) & ~(
            table["previous_probability"] >= high)
        newly = table[table["newly_at_risk"]].to_dict("records")
    columns = ["customer_id", "probability", "band", "top_reasons", "action_ids",
               "action_evidence", "experiment_arm"]
    crm = table[columns + (["previous_probability", "newly_at_risk"] if newly is not None
                           else [])]
    _atomic_frame(crm, paths["csv"], "csv")
    _atomic_frame(crm, paths["parquet"], "parquet")
    html = render_html(table, cards, events, helper, cutoff, config, newly)
    write_text_atomic(html, paths["html"])
    shutil.rmtree(work, ignore_errors=True)
    return paths


def _outcomes(events: pd.DataFrame, helper: Assistant, cutoff: pd.Timestamp,
              table: pd.DataFrame) -> dict | None:
    """Calibration and lift need outcomes: only for a past cutoff whose horizon the data covers."""
    definition = helper.scorer.model.definition
    if cutoff + pd.Timedelta(days=definition.horizon) > data_bounds(events)[1]:
        return None
    y = churn_labels(events, cutoff, pd.Index(table["customer_id"], dtype="string"), definition)
    p = table["probability"].to_numpy()
    metrics = evaluate_predictions(np.asarray(y), p)
    bins = np.clip((p * 10).astype(int), 0, 9)
    calib = [{"bin": f"{b / 10:.1f}-{(b + 1) / 10:.1f}", "predicted": float(p[bins == b].mean()),
              "observed": float(np.asarray(y)[bins == b].mean()), "n": int((bins == b).sum())}
             for b in range(10) if (bins == b).any()]
    order = np.argsort(-p, kind="stable")
    yy = np.asarray(y)[order]
    base = yy.mean()
    lift = [{"decile": d + 1, "lift": float(yy[: max(1, len(yy) * (d + 1) // 10)].mean() / base)}
            for d in range(10)] if base > 0 else []
    return {"metrics": metrics, "calibration": calib, "lift": lift}


def render_html(table: pd.DataFrame, cards: list[dict], events: pd.DataFrame,
                helper: Assistant, cutoff: pd.Timestamp, config: ReportConfig,
                newly: list[dict] | None = None) -> str:
    env = Environment(loader=PackageLoader("service", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    hist = np.histogram(table["probability"], bins=10, range=(0, 1))[0].tolist()
    reasons = Counter(k for kinds in table["reason_kinds"] for k in kinds.split(",") if k)
    table = table.assign(segment=pd.cut(table["orders"], [0, 1, 3, 10, np.inf],
                                        labels=["1 order", "2-3 orders", "4-10 orders",
                                                "11+ orders"], include_lowest=True))
    segments = (table.groupby("segment", observed=True)
                .agg(customers=("customer_id", "size"), mean_risk=("probability", "mean"),
                     high=("band", lambda b: float((b == "high").mean())),
                     revenue=("monetary", "sum")).reset_index().to_dict("records"))
    labels = yaml.safe_load(resources.files("service").joinpath("templates/report_labels.yaml")
                            .read_text("utf-8"))
    return env.get_template("report.html.j2").render(
        L=labels.get(config.lang, labels["en"]),
        cutoff=cutoff.date().isoformat(), model=helper.scorer.model.directory.name,
        n=len(table), bands=table["band"].value_counts().to_dict(), hist=hist,
        hist_max=max(hist) or 1, reasons=reasons.most_common(10), segments=segments,
        cards=cards, outcomes=_outcomes(events, helper, cutoff, table), lang=config.lang,
        newly=newly, effects=sorted((e.to_dict() for e in helper.effects.values()),
                                    key=lambda e: -e["uplift"]))
