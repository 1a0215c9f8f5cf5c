"""Run the backtest protocol end to end and collect every model's test metrics in one object.

Every model kind shares the ``fit``/``predict_proba`` contract on snapshot frames, so
``retention evaluate`` compares baselines, the LoRA encoder and the hybrid on equal terms: same
snapshots, same validation-chosen F1 threshold, same test cutoff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from finetune.baselines import BASELINES, make_baseline
from finetune.churn_models import ENCODER_MAX_EXAMPLES
from finetune.features import FEATURE_COLUMNS
from finetune.labels import DAY, ChurnDefinition, data_bounds, plan_backtest
from finetune.lora import LoraConfig
from finetune.metrics import best_f1_threshold, evaluate_predictions, paired_bootstrap
from finetune.selection import MAX_ENCODER_STACK_ROWS, MAX_ENCODER_VAL_ROWS, MAX_STACK_ROWS
from finetune.snapshots import backtest_snapshots

TEXT_KINDS = ("encoder", "hybrid", "stack", "fused")
# The stacks over fitted bases and their inputs; ``served``'s are chosen on validation.
STACK_KINDS: dict[str, tuple[str, ...] | None] = {
    "hybrid": ("encoder", "lightgbm"), "stack": ("encoder", "lightgbm", "logreg"), "served": None}
MODEL_KINDS: tuple[str, ...] = (*BASELINES, *TEXT_KINDS, "served")
DEFAULT_MODELS: tuple[str, ...] = (*BASELINES, "served")


@dataclass
class EvaluateConfig:
    definition: ChurnDefinition = field(default_factory=ChurnDefinition)
    step: int = 30
    n_val: int = 1
    max_train_cutoffs: int | None = None
    models: tuple[str, ...] = DEFAULT_MODELS
    lora: LoraConfig = field(default_factory=LoraConfig)
    include_text: bool = True
    encoder_max_examples: int | None = ENCODER_MAX_EXAMPLES
    checkpoint_dir: Path | None = None
    # "auto": choose the newest N fit cutoffs on validation (finetune.window); "all"; or N.
    train_window: str | int = "auto"
    # None: the served stack's inputs are chosen on validation; a refit passes the choice on.
    served_inputs: tuple[str, ...] | None = None
    # BG/NBD's outputs as features of LightGBM and logreg: None, each chooses on validation.
    btyd: bool | None = None
    # Stacking and calibration rows (whole customers, sampled): the encoder scores each of them.
    stack_max_rows: int | None = MAX_STACK_ROWS
    # The same when the encoder scores them (it is the cost): see MAX_ENCODER_STACK_ROWS.
    encoder_stack_max_rows: int | None = MAX_ENCODER_STACK_ROWS
    # Validation rows a text model reads (whole customers, sampled); the test rows are never
    # capped. See MAX_ENCODER_VAL_ROWS.
    encoder_val_max_rows: int | None = MAX_ENCODER_VAL_ROWS
    step_progress: Callable[[int, int, str], None] | None = field(default=None, repr=False,
                                                                 compare=False)


def stack_cap(config: EvaluateConfig, encoder: bool) -> int | None:
    """The stacking rows' cap: the smaller one when the encoder must score every row."""
    caps = [c for c in (config.stack_max_rows,
                        config.encoder_stack_max_rows if encoder else None) if c]
    return min(caps) if caps else None


def needs_text(config: EvaluateConfig) -> bool:
    """Whether some requested kind reads the serialized histories (the encoder does)."""
    served = config.served_inputs or ()
    return any(m in TEXT_KINDS for m in config.models) or (
        "served" in config.models and "encoder" in served)


def add_texts(events: pd.DataFrame, snaps: pd.DataFrame, lora: LoraConfig,
              include_text: bool = True, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Serialize snapshots with the encoder's tokenizer and budget into a ``text`` column;
    with ``rows`` only those (the others get no text: nothing may read it)."""
    from finetune.encoders import load_tokenizer
    from finetune.serialize import Serializer

    serializer = Serializer(load_tokenizer(lora.encoder), lora.max_tokens, include_text)
    mask = np.ones(len(snaps), bool) if rows is None else np.asarray(rows, bool)
    texts = np.full(len(snaps), None, dtype=object)
    texts[mask] = [s.text for s in serializer.serialize_snapshots(events, snaps[mask])]
    return snaps.assign(text=texts)


def text_rows(snaps: pd.DataFrame, config: EvaluateConfig) -> np.ndarray:
    """The snapshots a text model reads: every test row, validation's rows up to
    ``encoder_val_max_rows`` (whole customers), and of the fit rows only the encoder's training
    sample and the stacking/calibration rows (``fit_models`` draws the same ones). Serializing
    every fit snapshot took 41 of the 51 minutes a 25,000-customer run had spent when it was
    stopped (243,140 fit snapshots), for 23,000 rows the encoder reads.
    """
    from finetune.churn_models import encoder_split
    from finetune.sampling import cap_customers

    is_fit = (snaps["split"] == "fit").to_numpy()
    fit = snaps[is_fit]
    enc_fit, held_out = encoder_split(fit, config.encoder_max_examples, config.lora.seed)
    calib = cap_customers(fit, held_out, stack_cap(config, True), config.lora.seed)
    keep = fit.index.isin(enc_fit.index) | calib
    is_val = (snaps["split"] == "val").to_numpy()
    val = snaps[is_val]
    val_keep = cap_customers(val, np.ones(len(val), bool), config.encoder_val_max_rows,
                             config.lora.seed)
    out = ~(is_fit | is_val)
    out[np.flatnonzero(is_fit)[keep]] = True
    out[np.flatnonzero(is_val)[val_keep]] = True
    return out


def fit_models(parts: dict[str, pd.DataFrame], config: EvaluateConfig,
               note: Callable[[str], None]) -> dict[str, Any]:
    """Fit the requested kinds. The stacks (``hybrid``, ``stack``, ``served``) reuse the fitted
    bases; ``served`` is chosen among them on validation (``finetune.selection``)."""
    from finetune.churn_models import EncoderKind, calibration_rows, encoder_split, readable
    from finetune.sampling import cap_customers
    from finetune.selection import fit_served, fit_stack, stack_data

    fit, val = parts["fit"], parts["val"]
    y, y_val = fit["label"].to_numpy(), val["label"].to_numpy()
    wanted = list(config.models)
    needed = set(wanted) - set(STACK_KINDS)
    for name in (k for k in wanted if k in STACK_KINDS):
        needed |= set(STACK_KINDS[name] or ("lightgbm", "logreg", "bgnbd"))
    if "served" in wanted and config.served_inputs:
        needed |= set(config.served_inputs)
    fitted: dict[str, Any] = {}
    enc_fit, held_out = encoder_split(fit, config.encoder_max_examples, config.lora.seed)
    text_fitted = "encoder" in needed
    if not text_fitted:  # no encoder: every fit customer is out-of-fold for the stacks
        enc_fit, held_out = None, np.ones(len(fit), bool)
    calib_mask = cap_customers(fit, held_out, stack_cap(config, text_fitted), config.lora.seed)
    if text_fitted:  # prepare serialized exactly these fit rows (text_rows)
        missing = int(enc_fit["text"].isna().sum() + fit.loc[calib_mask, "text"].isna().sum())
        if missing:
            raise ValueError(f"{missing} fit rows the encoder reads were not serialized: "
                             "prepare and fit_models disagree on the encoder's rows")
    # What the text models read of validation (a capped sample, ``text_rows``); the stacks are
    # fitted and chosen on the same rows, so every candidate is judged on equal terms.
    val_text = readable(val)
    y_val_text = val_text["label"].to_numpy()
    for name in [k for k in MODEL_KINDS if k in needed and k not in STACK_KINDS]:
        note(f"fitting {name}")
        if name in ("encoder", "fused"):
            lora = config.lora if name == "encoder" else replace(
                config.lora, n_numeric=len(FEATURE_COLUMNS))
            ckpt = config.checkpoint_dir / name if config.checkpoint_dir else None
            assert enc_fit is not None
            fitted[name] = EncoderKind(lora, ckpt, progress=config.step_progress).fit(
                enc_fit, enc_fit["label"].to_numpy(), val_text, y_val_text)
        else:
            fitted[name] = make_baseline(name, config.definition.horizon, config.btyd).fit(  # type: ignore[attr-defined]
                fit, y, val, y_val)
    for name in ("encoder", "fused"):
        if name in fitted:
            assert enc_fit is not None
            fitted[name].params.update(encoder_rows=len(enc_fit),
                                       encoder_customers=int(enc_fit["customer_id"].nunique()))
    if text_fitted and calib_mask.any():  # else the encoders keep validation's calibration
        frames, labels = calibration_rows(fit, val_text, calib_mask)
        note(f"calibrating on {sum(len(f) for f in frames)} held-out rows")
        for name in ("encoder", "fused"):
            if name in fitted:
                fitted[name].calibrate(frames, labels)
    stacks = [k for k in wanted if k in STACK_KINDS]
    if stacks:
        note("fitting the stacks" + (" and choosing the served model on validation"
                                     if "served" in stacks and not config.served_inputs else ""))
        data = stack_data(fitted, fit, val_text, calib_mask, enc_fit, config.definition.horizon,
                          select="served" in stacks and not config.served_inputs)
        for name in stacks:
            if name == "served":
                fitted[name] = fit_served(fitted, data, config.served_inputs, note)
            else:
                fitted[name] = fit_stack(fitted, STACK_KINDS[name], data)  # type: ignore[arg-type]
    return fitted


def score_models(models: dict[str, Any], names: tuple[str, ...], val: pd.DataFrame,
                 test: pd.DataFrame, n_boot: int = 1000) -> tuple[dict[str, dict], pd.DataFrame]:
    """Test metrics per model (with paired-bootstrap intervals) and the test predictions.

    Each model's AUC gap to LightGBM comes with an interval from resamples shared by every model,
    so "hybrid beats LightGBM by 0.01" can be told apart from noise on a few thousand customers.
    """
    from finetune.churn_models import rows_for

    out: dict[str, dict] = {}
    preds = test[["customer_id", "cutoff", "label"]].copy()
    for name in names:
        model = models[name]
        seen = rows_for(model, val)  # a text model's capped sample
        threshold = best_f1_threshold(seen["label"].to_numpy(), model.predict_proba(seen))
        preds[name] = model.predict_proba(test)
        metrics = evaluate_predictions(test["label"].to_numpy(), preds[name].to_numpy(), threshold)
        if getattr(model, "params", None):
            metrics["params"] = model.params
        out[name] = metrics
    add_intervals(out, preds, n_boot)
    return out, preds


def add_intervals(metrics: dict[str, dict], preds: pd.DataFrame, n_boot: int = 1000) -> None:
    """Attach ``auc_ci``/``ece_ci`` (and the gap to LightGBM when it was scored) in place."""
    names = [n for n in metrics if n in preds]
    if not names or n_boot <= 0:
        return
    reference = "lightgbm" if "lightgbm" in names and len(names) > 1 else None
    y = preds["label"].to_numpy()
    for name, extra in paired_bootstrap(y, {n: preds[n].to_numpy() for n in names},
                                        reference, n_boot=n_boot).items():
        metrics[name].update(extra)


def text_warning(events: pd.DataFrame, encoder: str, sample: int = 2000) -> str | None:
    """A note when the encoder cannot read much of the customers' text (e.g. Chinese reviews
    under the English ``minilm``): training would go on, blind to those words."""
    from finetune.encoders import UNKNOWN_WARN, load_tokenizer, unknown_share

    if "text" not in events.columns:
        return None
    texts = events["text"].dropna().astype(str)
    texts = texts[texts.str.strip() != ""]
    if texts.empty:
        return None
    if len(texts) > sample:
        texts = texts.sample(sample, random_state=0)
    share = unknown_share(load_tokenizer(encoder), texts.tolist())
    if share <= UNKNOWN_WARN:
        return None
    hint = " (--encoder multilingual reads Chinese)" if encoder != "multilingual" else ""
    return (f"{share:.0%} of the customers' text tokens are unknown to the {encoder!r} encoder's "
            f"vocabulary, so it cannot read those words{hint}")


def select_window(snaps: pd.DataFrame, plan: Any, config: EvaluateConfig,
                  note: Callable[[str], None]) -> pd.DataFrame:
    """Keep the fit snapshots of the training window (chosen on validation when "auto"); the
    plan records the choice and the cutoffs really used."""
    from finetune.window import apply_window, choose_window

    setting = config.train_window
    if setting == "all":
        return snaps
    fit = snaps[snaps["split"] == "fit"]
    if setting == "auto":
        note("choosing the training window on validation")
        choice = choose_window(fit, snaps[snaps["split"] == "val"], config.definition.horizon)
        plan.window = choice.to_dict()
        n = choice.n_cutoffs
        note(f"training window: {choice.reason}")
    else:
        n = int(setting)
        if n < 1:
            raise ValueError(f"the training window must be 'auto', 'all' or at least 1, not {n}")
        plan.window = {"n_cutoffs": n, "reason": "set by the user"}
    if n is None:
        return snaps
    kept = apply_window(fit, n)
    plan.fit_cutoffs = sorted(pd.Timestamp(c) for c in kept["cutoff"].unique())
    return pd.concat([kept, snaps[snaps["split"] != "fit"]], ignore_index=True)


def prepare(events: pd.DataFrame, config: EvaluateConfig, note: Callable[[str], None],
            production: bool = False) -> tuple[dict[str, pd.DataFrame], Any]:
    """Backtest snapshots split into fit / val / test (with texts when a text model is asked);
    ``production``: the refit's fit / val, one horizon later and without a test part."""
    unknown = [m for m in config.models if m not in MODEL_KINDS]
    if unknown:
        raise ValueError(f"unknown model kind {unknown[0]!r}; known: {', '.join(MODEL_KINDS)}")
    plan = plan_backtest(events, config.definition, step=config.step, n_val=config.n_val,
                         max_train_cutoffs=config.max_train_cutoffs, production=production)
    snaps = backtest_snapshots(events, plan, config.definition,
                               on_cutoff=lambda c: note(f"snapshot {c.date()}"),
                               with_test=not production)
    snaps = select_window(snaps, plan, config, note)
    if needs_text(config):
        if config.include_text and not production:
            warning = text_warning(events, config.lora.encoder)
            if warning:
                note(warning)
                plan.notes.append(warning)
        rows = text_rows(snaps, config)
        note(f"serializing {int(rows.sum()):,} of {len(snaps):,} snapshots (those a text "
             "model reads)")
        snaps = add_texts(events, snaps, config.lora, config.include_text, rows)
    parts = {name: snaps[snaps["split"] == name].reset_index(drop=True)
             for name in (("fit", "val") if production else ("fit", "val", "test"))}
    for name, part in parts.items():
        if part.empty or part["label"].nunique() < 2:
            raise ValueError(f"the {name} snapshots have {len(part)} customers and "
                             f"{part['label'].nunique()} label value(s): need both churners and "
                             "stayers; check the horizon, lookback and activity events")
    return parts, plan


def result_header(dataset: str, config: EvaluateConfig, parts: dict[str, pd.DataFrame],
                  plan: Any) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "horizon": config.definition.horizon,
        "test_cutoff": str(plan.test_cutoff.date()),
        "n_train": int(len(parts["fit"]) + len(parts["val"])),
        "n_test": len(parts["test"]),
        "test_churn_rate": float(np.mean(parts["test"]["label"])),
        "n_fit": len(parts["fit"]),
        "n_val": len(parts["val"]),
        "definition": config.definition.to_dict(),
        "backtest": plan.to_dict(),
        "include_text": config.include_text,
        "notes": plan.notes,
        "models": {},
    }


def evaluate(events: pd.DataFrame, config: EvaluateConfig, dataset: str = "events",
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train each model on fit snapshots, pick its F1 threshold on validation, score the test."""
    return evaluate_with_predictions(events, config, dataset, progress)[0]


def evaluate_with_predictions(events: pd.DataFrame, config: EvaluateConfig,
                              dataset: str = "events",
                              progress: Callable[[str], None] | None = None,
                              ) -> tuple[dict[str, Any], pd.DataFrame]:
    """``evaluate`` plus one row per test customer (label and each model's probability), so two
    runs (e.g. with and without text) can be compared customer by customer."""
    note = progress or (lambda _msg: None)
    parts, plan = prepare(events, config, note)
    result = result_header(dataset, config, parts, plan)
    if needs_text(config):
        result["encoder"] = config.lora.to_dict()
    models = fit_models(parts, config, note)
    note("scoring the test cutoff")
    result["models"], preds = score_models(models, config.models, parts["val"], parts["test"])
    return result, preds


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, model: str, model_b: str | None = None,
                 n_boot: int = 2000) -> dict[str, Any]:
    """Paired comparison of two runs' test predictions (from ``evaluate --predictions``).

    Both runs must have scored the same customers at the same cutoff with the same labels;
    anything else would compare different questions, so it is refused.
    """
    model_b = model_b or model
    for name, frame, col in (("a", a, model), ("b", b, model_b)):
        missing = {"customer_id", "cutoff", "label", col} - set(frame.columns)
        if missing:
            raise ValueError(f"run {name} lacks column(s) {sorted(missing)}; expected the file "
                             "written by `retention evaluate --predictions`")
    keys = ["customer_id", "cutoff"]
    both = a[[*keys, "label", model]].rename(columns={model: "a"}).merge(
        b[[*keys, "label", model_b]].rename(columns={model_b: "b", "label": "label_b"}),
        on=keys, how="inner")
    if len(both) != len(a) or len(both) != len(b):
        raise ValueError(f"the runs scored different customers ({len(a)} and {len(b)} rows, "
                         f"{len(both)} in common): compare runs of the same test cutoff")
    if (both["label"] != both["label_b"]).any():
        raise ValueError("the runs disagree on labels: they used different churn definitions")
    y = both["label"].to_numpy()
    boot = paired_bootstrap(y, {"a": both["a"].to_numpy(), "b": both["b"].to_numpy()},
                            reference="b", n_boot=n_boot)
    return {"n": len(both), "model_a": model, "model_b": model_b,
            "auc_a": float(roc_auc_score(y, both["a"])),
            "auc_b": float(roc_auc_score(y, both["b"])),
            "auc_a_minus_b": boot["a"]["auc_diff"], "ci95": boot["a"]["auc_diff_ci"],
            "p_a_better": boot["a"]["p_better"], "n_boot": n_boot}


def origin_events(events: pd.DataFrame, origin: int, spacing: int = 30) -> pd.DataFrame:
    """The events a backtest at rolling origin ``origin`` may read: everything before the data
    end moved ``origin * spacing`` days earlier. Its test cutoff is then that end - horizon, and
    nothing after it (labels included) exists for that backtest."""
    if origin < 0:
        raise ValueError(f"origin must be 0 or more, not {origin}")
    if origin == 0:
        return events
    _, end = data_bounds(events)
    return events[events["ts"] < end - origin * spacing * DAY].reset_index(drop=True)


def summarize_origins(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, spread and range of each model's test metrics over the origins, the winner of each
    origin, and each model's mean gap to the best single baseline."""
    names = [n for n in results[0]["models"] if all(n in r["models"] for r in results)]
    summary: dict[str, Any] = {"n_origins": len(results),
                               "test_cutoffs": [r["test_cutoff"] for r in results], "models": {}}
    for name in names:
        aucs = np.array([r["models"][name]["auc"] for r in results])
        eces = np.array([r["models"][name]["ece"] for r in results])
        summary["models"][name] = {
            "auc_mean": float(aucs.mean()), "auc_std": float(aucs.std(ddof=1)) if len(aucs) > 1
            else 0.0, "auc_min": float(aucs.min()), "auc_max": float(aucs.max()),
            "ece_mean": float(eces.mean()), "ece_max": float(eces.max()),
            "auc_by_origin": [float(a) for a in aucs]}
    summary["winner_by_origin"] = [max(names, key=lambda n: r["models"][n]["auc"])
                                   for r in results]
    if "served" in names:  # which stack validation chose at each origin
        summary["served_by_origin"] = [r["models"]["served"]["params"]["choice"]["chosen"]
                                       for r in results]
    baselines = [n for n in names if n in BASELINES]
    if baselines:
        best = max(baselines, key=lambda n: summary["models"][n]["auc_mean"])
        summary["best_baseline"] = best
        for name in names:
            summary["models"][name]["auc_minus_best_baseline"] = (
                summary["models"][name]["auc_mean"] - summary["models"][best]["auc_mean"])
    return summary


def evaluate_origins(events: pd.DataFrame, config: EvaluateConfig, origins: int,
                     dataset: str = "events", spacing: int = 30,
                     progress: Callable[[str], None] | None = None,
                     ) -> tuple[dict[str, Any], pd.DataFrame]:
    """A rolling-origin backtest: ``origins`` test cutoffs (data end - horizon, then ``spacing``
    days earlier each), each with its own training cutoffs before it and its own validation.
    One seasonal window should not decide which model is best."""
    if origins < 1:
        raise ValueError(f"origins must be at least 1, not {origins}")
    note = progress or (lambda _msg: None)
    results, frames = [], []
    for k in range(origins):
        result, preds = evaluate_with_predictions(
            origin_events(events, k, spacing), config, dataset,
            progress=note if origins == 1 else lambda m, k=k: note(f"origin {k + 1}/{origins}: {m}"))
        result["origin"] = k
        results.append(result)
        frames.append(preds.assign(origin=k))
    if origins == 1:
        return results[0], frames[0]
    out = {"dataset": dataset, "horizon": config.definition.horizon, "origins": results,
           "summary": summarize_origins(results)}
    return out, pd.concat(frames, ignore_index=True)


__all__ = [
    "MODEL_KINDS",
    "EvaluateConfig",
    "add_intervals",
    "compare_runs",
    "evaluate",
    "evaluate_origins",
    "evaluate_with_predictions",
    "fit_models",
    "prepare",
    "score_models",
]
