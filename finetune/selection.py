"""Which model is served: the stack of base models that wins on out-of-time validation.

On logs it had never seen the fixed hybrid (encoder + LightGBM) lost to plain logistic
regression (#17), so the served model is chosen, not assumed. Every non-empty subset of the
fitted bases (encoder, LightGBM, logistic regression) is a candidate; a one-input candidate is
that model with a Platt calibration, the encoder + LightGBM pair is the hybrid, all three are
``stack``. Each candidate's weights are fitted on the same stacking rows, which no base model
was fitted on; each is then scored on the same validation rows, where no base model may have
seen the answer:

- LightGBM and logistic regression are refitted (chosen parameters) on the purged fit rows, the
  cutoffs whose label window ends before validation begins, so they cannot recognise a
  validation customer's future from a training label that shares it;
- the encoder is judged on the validation customers it never trained on, when there are
  enough of them (the rows it early-stopped on, ``early_stopping_rows``).

The best validation ROC-AUC wins; a candidate with fewer inputs within ``SIMPLER_WITHIN`` of
it wins instead (cheaper to run and explain, and the difference is noise). The served model
then uses the bases fitted on every fit row, as every other kind does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from finetune.baselines import purged_rows
from finetune.calibration import logit
from finetune.churn_models import (
    STACK_BASES,
    StackKind,
    base_logit,
    early_stopping_rows,
    stack_name,
)

SIMPLER_WITHIN = 0.001
# Bases whose scores on a fit row need no cross-fitting: the encoder never trained on the
# stacking rows' customers, and BG/NBD reads no labels at all.
UNSUPERVISED = ("encoder", "bgnbd")
MAX_STACK_ROWS = 20_000
# When the encoder is a candidate it scores every stacking row (about 18 rows/s at 128 tokens
# on 2 cores: 9,819 rows took 9 minutes of the demo's 30). The stacks fit at most four weights
# and a bias, which a few thousand rows pin down; the cost of this cap is measured in
# bench/README.md.
MAX_ENCODER_STACK_ROWS = 5_000
# The validation rows a text model reads (serialized, scored for its calibration, the served
# choice and its threshold), whole customers sampled. Validation is one row per active customer,
# so it grows with the shop: at 25,000 customers the encoder scored 21,207 validation rows, then
# 18,770 of them again to choose the served model, at ~47 rows/s on 2 cores (256 tokens). The
# choice compares a handful of ROC-AUCs that differ by thousandths; 5,000 rows keep every
# reported log below the cap (Online Retail, the demo, Amazon), so their figures do not move.
MAX_ENCODER_VAL_ROWS = 5_000


@dataclass
class StackData:
    """The stack inputs of every base on the stacking rows and on the selection rows."""

    calib: dict[str, np.ndarray]
    y_calib: np.ndarray
    select: dict[str, np.ndarray]
    y_select: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def stack_data(fitted: dict[str, Any], fit: pd.DataFrame, val: pd.DataFrame,
               calib_mask: np.ndarray, enc_fit: pd.DataFrame | None, horizon: float,
               select: bool = True) -> StackData:
    """Stacking rows: the fit rows in ``calib_mask`` (customers the encoder never trained on;
    every fit customer when there is no encoder), with LightGBM and logistic regression
    cross-fitted by customer so that no base scores a row it learnt; pooled with validation when
    they are few, as ``calibration_rows`` decides; validation alone when there are none.
    Selection rows: see the module's docstring (``select=False`` skips them)."""
    from finetune.churn_models import calibration_rows

    bases = [n for n in STACK_BASES if n in fitted]
    y = fit["label"].to_numpy()
    frames, labels = calibration_rows(fit, val, calib_mask)
    oof = {}
    if calib_mask.any():
        groups = fit["customer_id"].to_numpy()
        oof = {n: logit(fitted[n].cross_fit(fit, y, groups, rows=calib_mask)) for n in bases
               if n not in UNSUPERVISED}
    calib: dict[str, np.ndarray] = {}
    for name in bases:
        parts = []
        for frame in frames:
            if frame is val or name in UNSUPERVISED:
                parts.append(base_logit(name, fitted[name], frame))
            else:
                parts.append(oof[name][calib_mask])
        calib[name] = np.concatenate(parts)
    info: dict[str, Any] = {"stack_rows": {
        "validation": int(sum(len(f) for f in frames if f is val)),
        "held_out_fit": int(calib_mask.sum())}}
    if not select:
        return StackData(calib, np.concatenate(labels), {}, np.array([]), info)
    rows = (early_stopping_rows(enc_fit, val) if "encoder" in fitted and enc_fit is not None
            else np.ones(len(val), bool))
    sel = val[rows]
    purged = purged_rows(fit, y, val, horizon)
    chosen: dict[str, np.ndarray] = {}
    for name in bases:
        if name in UNSUPERVISED:  # all of validation: the encoder scored it when it calibrated
            chosen[name] = base_logit(name, fitted[name], val)[rows]
        elif purged is not None:
            base = fitted[name]
            model = base.estimator().fit(base.design(fit.loc[purged]), y[purged])
            chosen[name] = logit(model.predict_proba(base.design(sel))[:, 1])
        else:
            chosen[name] = base_logit(name, fitted[name], sel)
    info.update(selection_rows=int(rows.sum()), selection_unseen_only=bool(
        "encoder" in fitted and rows.sum() < len(val)), selection_purged=purged is not None,
        purged_fit_rows=int(purged.sum()) if purged is not None else len(fit))
    return StackData(calib, np.concatenate(labels), chosen, sel["label"].to_numpy(), info)


def candidates(bases: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of the fitted bases, in ``STACK_BASES`` order, smallest first."""
    ordered = [n for n in STACK_BASES if n in bases]
    return [c for k in range(1, len(ordered) + 1) for c in combinations(ordered, k)]


def choose_inputs(data: StackData, bases: list[str],
                  simpler_within: float = SIMPLER_WITHIN) -> tuple[tuple[str, ...], dict]:
    """The winning inputs and the evidence: each candidate's validation ROC-AUC."""
    scores: dict[tuple[str, ...], float] = {}
    for inputs in candidates(bases):
        z = np.column_stack([data.calib[n] for n in inputs])
        stacker = LogisticRegression(C=1.0).fit(z, data.y_calib)
        zs = np.column_stack([data.select[n] for n in inputs])
        scores[inputs] = float(roc_auc_score(data.y_select, stacker.decision_function(zs)))
    best = max(scores.values())
    near = [c for c in scores if scores[c] >= best - simpler_within]
    chosen = min(near, key=lambda c: (len(c), -scores[c]))
    top = max(scores, key=lambda c: scores[c])
    reason = (f"{stack_name(chosen)} won on validation (ROC-AUC {scores[chosen]:.4f}"
              + (f"; the best, {stack_name(top)} {best:.4f}, is within {simpler_within} and has "
                 "more inputs)" if top != chosen
                 else f"; runner-up {_runner_up(scores, chosen)})"))
    return chosen, {"chosen": stack_name(chosen), "reason": reason,
                    "val_auc": {stack_name(c): v for c, v in scores.items()},
                    **data.info}


def _runner_up(scores: dict[tuple[str, ...], float], chosen: tuple[str, ...]) -> str:
    rest = {c: v for c, v in scores.items() if c != chosen}
    if not rest:
        return "none"
    c = max(rest, key=lambda k: rest[k])
    return f"{stack_name(c)} {rest[c]:.4f}"


def fit_stack(fitted: dict[str, Any], inputs: tuple[str, ...], data: StackData,
              extra: dict | None = None) -> StackKind:
    """A stack of the fully fitted bases with its weights fitted on the stacking rows."""
    stack = StackKind(bases={n: fitted[n] for n in inputs}, inputs=inputs,
                      params=dict(extra or {}))
    z = np.column_stack([data.calib[n] for n in inputs])
    return stack.fit_design(z, data.y_calib, data.info["stack_rows"])


def fit_served(fitted: dict[str, Any], data: StackData, inputs: tuple[str, ...] | None,
               note: Callable[[str], None]) -> StackKind:
    """The served stack: ``inputs`` when set (a refit keeps the backtest's choice), else the
    choice made on validation.

    Its weights and bias stay those fitted on the stacking rows (many cutoffs): refitting the
    bias on the newest labelled cutoff alone made the Online Retail test ECE worse (mean over 3
    origins 0.043 -> 0.104, worst 0.073 -> 0.183), because that cutoff's season is not the
    test's."""
    bases = [n for n in STACK_BASES if n in fitted]
    if inputs is None:
        inputs, choice = choose_inputs(data, bases)
        note(f"served model: {choice['reason']}")
    else:
        missing = [n for n in inputs if n not in fitted]
        if missing:
            raise ValueError(f"the served inputs {list(inputs)} need {missing}, not fitted")
        choice = {"chosen": stack_name(inputs), "reason": f"{stack_name(inputs)} was set"}
    return fit_stack(fitted, tuple(inputs), data, {"choice": choice})


__all__ = ["MAX_ENCODER_STACK_ROWS", "MAX_ENCODER_VAL_ROWS", "MAX_STACK_ROWS", "SIMPLER_WITHIN", "StackData", "candidates",
           "choose_inputs", "fit_served", "fit_stack", "stack_data"]
