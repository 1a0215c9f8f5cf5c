"""``retention train``: fit every kind on the backtest, refit the served model on the newest
labelled cutoffs, and publish it as a version with its card, current if it passes the gate.

The model card records the data, the protocol and the test metrics of the encoder and hybrid next
to the baselines trained on the very same snapshots, so nobody has to trust a number without its
comparison. Those figures come from the backtest fit (newest training cutoff data end - 2H, so it
can be tested at data end - H). The published model is then refitted with the same
hyper-parameters on cutoffs one horizon later (the newest is data end - H): in production it
learns from the most recent labelled behaviour, which the backtest fit never saw.

Promotion gate: the new version becomes current only when its backtest ROC-AUC is not worse than
the current version's on the same data and protocol by more than a tolerance (``force``
overrides); the decision and both figures are recorded in ``metrics.json`` and the card. An
interrupted run resumes from ``ROOT/.work/<hash>/``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Template

from finetune.artifacts import (
    ModelNotFound,
    TrainedModel,
    current,
    next_version,
    publish,
    staging_dir,
)
from finetune.baselines import BASELINES
from finetune.evaluate import (
    EvaluateConfig,
    fit_models,
    prepare,
    result_header,
    score_models,
)
from finetune.features import FEATURE_COLUMNS
from finetune.labels import data_bounds
from finetune.metrics import best_f1_threshold
from finetune.serialize import SERIALIZATION_VERSION

GATE_KIND = "served"

# The backtest: the baselines, the encoder, the hybrid and the three-input stack for the card,
# and the served stack, chosen among every stack of the bases on validation.
TRAINED_KINDS = (*BASELINES, "encoder", "hybrid", "stack", "served")
CARD = Template("""# Churn model {{ version }}

Trained {{ created }} on `{{ dataset }}` ({{ n_events }} events) with Retention Assistant.

## What it predicts
Probability that an eligible customer (an {{ d.activity_events|join('/') }} in the {{ d.lookback }}
days before the cutoff, at least {{ d.min_prior }} before it) churns: {{ d.kind }} within
{{ d.horizon }} days after the cutoff.

## Model
Served: **{{ r.models.served.params.choice.chosen }}**, a logistic stack of
{{ r.models.served.params.inputs|join(', ') }} (weights {% for w in r.models.served.params.weights %}{{ '%.3f'|format(w) }}{{ ', ' if not loop.last }}{% endfor %},
bias {{ '%.3f'|format(r.models.served.params.bias) }}), chosen on validation among every stack of
{% if r.models.served.params.choice.val_auc is defined %}{% for k in r.models.served.params.choice.val_auc if '+' not in k %}{{ k }}{{ ', ' if not loop.last }}{% endfor %}{% else %}its bases{% endif %}: {{ r.models.served.params.choice.reason }}.
{% if r.models.served.params.choice.val_auc is defined -%}
Validation ROC-AUC by candidate (bases refitted on the fit cutoffs whose labels end before
validation; the encoder judged on customers it never trained on):
{% for k, v in r.models.served.params.choice.val_auc.items() %}{{ k }} {{ '%.4f'|format(v) }}{{ ', ' if not loop.last }}{% endfor %}.
{% endif %}
- Encoder `{{ lora.encoder }}` with LoRA (r={{ lora.lora_r }}, alpha={{ lora.lora_alpha }},
  dropout={{ lora.lora_dropout }}, modules {{ lora.target_modules|join(', ') }}), mean pooling,
  linear head, trained on {{ r.models.encoder.params.encoder_rows }} fit snapshots of
  {{ r.models.encoder.params.encoder_customers }} customers; Platt calibration fitted on
  {{ r.models.encoder.params.calibration_rows }} rows no model was fitted or tuned on (every
  snapshot of the other fit customers, else validation).
- Serialization v{{ serialization }}: {{ lora.max_tokens }}-token budget, oldest events dropped
  first, events before quotes; review/ticket text {{ 'included' if include_text else 'blanked' }}.
- Stacks (hybrid = encoder + LightGBM, stack = all three, the served one) are fitted on the same
  rows ({{ r.models.served.params.stack_rows.validation }} validation rows and
  {{ r.models.served.params.stack_rows.held_out_fit }} held-out fit rows with cross-fitted
  LightGBM and logistic regression scores).

## Protocol
Test cutoff {{ r.test_cutoff }} (data end - horizon); training cutoffs
{{ r.backtest.fit_cutoffs|join(', ') }}; validation {{ r.backtest.val_cutoffs|join(', ') }}.
{{ r.n_fit }} fit, {{ r.n_val }} validation, {{ r.n_test }} test customers; test churn rate
{{ '%.1f'|format(100 * r.test_churn_rate) }}%.
{% if r.backtest.window is defined -%}
Training window: {{ r.backtest.window.reason }}.
{% endif -%}
LightGBM: {% for k, v in r.models.lightgbm.params.items() if k != 'val_auc' %}{{ k }}={{ v }}{{ ', ' if not loop.last }}{% endfor %}
(chosen on validation with the fit cutoffs whose labels end before it; the untuned model was a
candidate).

## Test metrics
| model | ROC-AUC (95% CI) | PR-AUC | Brier | ECE | lift@10% | recall@10% | F1 |
|---|---|---|---|---|---|---|---|
{% for name, m in r.models.items() -%}
| {{ name }} | {{ '%.3f'|format(m.auc) }} ({{ '%.3f'|format(m.auc_ci[0]) }}-{{ '%.3f'|format(m.auc_ci[1]) }}) | {{ '%.3f'|format(m.pr_auc) }} | {{ '%.3f'|format(m.brier) }} | {{ '%.3f'|format(m.ece) }} | {{ '%.2f'|format(m.lift10) }} | {{ '%.3f'|format(m.recall10) }} | {{ '%.3f'|format(m.f1) }} |
{% endfor %}
{% if r.models.served.auc_diff is defined -%}
Served minus LightGBM ROC-AUC: {{ '%+.4f'|format(r.models.served.auc_diff) }} (95% CI
{{ '%+.4f'|format(r.models.served.auc_diff_ci[0]) }} to {{ '%+.4f'|format(r.models.served.auc_diff_ci[1]) }},
paired bootstrap over test customers; better in {{ '%.0f'|format(100 * r.models.served.p_better) }}% of resamples).
{% endif %}
## What these figures refer to
The table is the backtest fit (training cutoffs up to {{ r.backtest.val_cutoffs[-1] }}), tested at
{{ r.test_cutoff }} on data it never saw. {% if r.published.refit -%}
The published model was then refitted with the same hyper-parameters on cutoffs
{{ r.published.fit_cutoffs|join(', ') }} and validation {{ r.published.val_cutoffs|join(', ') }}
(the newest labelled cutoff: data end - horizon; data {{ r.published.data_start }} to
{{ r.published.data_end }}), so it has no test figure of its own: its validation ROC-AUC is
{% for k, v in r.published.validation_auc.items() %}{{ k }} {{ '%.3f'|format(v) }}{{ ', ' if not loop.last }}{% endfor %}.
{%- else -%}
The published model is that backtest fit (no refit).
{%- endif %}

## Promotion
{{ r.promotion.decision }}: {{ r.promotion.reason }}

Training took {{ '%.0f'|format(seconds) }} s on {{ machine }}.
{% for note in r.notes %}
Note: {{ note }}.
{% endfor %}""")


def run_hash(events: pd.DataFrame, config: EvaluateConfig) -> str:
    """Same data and same config -> same work folder, so a rerun resumes instead of restarting."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(events[["customer_id", "ts", "event"]],
                                             index=False).to_numpy().tobytes())
    digest.update(json.dumps({**config.definition.to_dict(), **config.lora.to_dict(),
                              "step": config.step, "n_val": config.n_val,
                              "max_train_cutoffs": config.max_train_cutoffs,
                              "encoder_max_examples": config.encoder_max_examples,
                              "include_text": config.include_text,
                              "train_window": config.train_window}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def data_signature(events: pd.DataFrame) -> str:
    """Which data a backtest ran on: equal signatures make two versions' figures comparable."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(
        events[["customer_id", "ts", "event"]], index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _protocol(config: EvaluateConfig, test_cutoff: str) -> dict[str, Any]:
    protocol = {"definition": config.definition.to_dict(), "step": config.step,
                "n_val": config.n_val, "test_cutoff": test_cutoff}
    return json.loads(json.dumps(protocol))  # as metrics.json holds it (tuples as lists)


def refit(events: pd.DataFrame, config: EvaluateConfig, chosen: tuple[str, ...],
          backtest: dict[str, Any], note: Callable[[str], None]
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The served stack fitted again, one horizon later (newest cutoff: data end - H), with the
    inputs the backtest chose. The encoder is retrained only when the stack reads it; otherwise
    the backtest's encoder is kept for what it still does (serializing with its tokenizer)."""
    kinds = ("encoder", "served") if "encoder" in chosen else ("served",)
    config = replace(config, models=kinds, served_inputs=chosen,
                     checkpoint_dir=config.checkpoint_dir / "refit" if config.checkpoint_dir
                     else None)
    note("refitting the published model on the newest labelled cutoffs")
    parts, plan = prepare(events, config, note, production=True)
    models = fit_models(parts, config, note)
    if "encoder" not in models:
        models["encoder"] = backtest["encoder"]
    from sklearn.metrics import roc_auc_score

    from finetune.churn_models import rows_for

    # a text model reads a capped sample of validation (``evaluate.text_rows``)
    val = {k: rows_for(models[k], parts["val"]) for k in kinds}
    scores = {k: models[k].predict_proba(val[k]) for k in kinds}
    info = {"refit": True, **{k: v for k, v in plan.to_dict().items() if k != "test_cutoff"},
            "n_fit": len(parts["fit"]), "n_val": len(parts["val"]),
            "encoder_refit": "encoder" in kinds,
            "thresholds": {k: best_f1_threshold(val[k]["label"].to_numpy(), scores[k])
                           for k in kinds},
            "validation_auc": {k: float(roc_auc_score(val[k]["label"], scores[k]))
                               for k in kinds}}
    return models, info


def _gate_auc(metrics: dict[str, Any]) -> float:
    """The served model's backtest ROC-AUC; versions from before the choice served the hybrid."""
    models = metrics["models"]
    return float((models.get(GATE_KIND) or models["hybrid"])["auc"])


def promotion(root: Path, events: pd.DataFrame, parts: dict[str, pd.DataFrame],
              result: dict[str, Any], signature: str, protocol: dict[str, Any],
              tolerance: float, force: bool) -> dict[str, Any]:
    """Should the new version become current? Compared with the current version on the same
    data and protocol: its recorded backtest when it ran on this very data, else the current
    model scored on this backtest's test customers when its training data ended before the
    test cutoff (so it never saw that window); otherwise there is nothing fair to compare."""
    new_auc = _gate_auc(result)
    out: dict[str, Any] = {"kind": GATE_KIND, "new_auc": new_auc, "current_auc": None,
                           "tolerance": tolerance, "forced": force, "current": None}
    try:
        now = current(root)
    except ModelNotFound:
        return {**out, "decision": "promoted", "reason": "the first version of this model root"}
    out["current"] = now
    vdir = root / "versions" / now
    metrics = json.loads((vdir / "metrics.json").read_text())
    cfg = json.loads((vdir / "config.json").read_text())
    if metrics.get("data_signature") == signature and metrics.get("protocol") == protocol:
        out["current_auc"] = _gate_auc(metrics)
        out["basis"] = "the current version's backtest on the same data and protocol"
    elif cfg.get("trained_through") and cfg["trained_through"] <= protocol["test_cutoff"] and (
            cfg["definition"] == protocol["definition"]):
        from sklearn.metrics import roc_auc_score

        model = TrainedModel.load(vdir)
        test = parts["test"]
        cutoff = pd.Timestamp(protocol["test_cutoff"], tz="UTC")
        feats, _ = model.snapshot(events, cutoff, list(test["customer_id"]))
        out["current_auc"] = float(roc_auc_score(test["label"], model.predict(feats)))
        out["basis"] = "the current model scored on this backtest's test customers (unseen)"
    else:
        out["basis"] = "none: the current version ran on other data and saw this test window"
    if out["current_auc"] is None:
        return {**out, "decision": "promoted",
                "reason": f"no comparable figure for {now} ({out['basis']})"}
    worse = out["current_auc"] - new_auc
    if worse > tolerance and not force:
        return {**out, "decision": "kept " + now, "reason": (
            f"{GATE_KIND} ROC-AUC {new_auc:.4f} is {worse:.4f} below {now}'s "
            f"{out['current_auc']:.4f} ({out['basis']}), more than the tolerance {tolerance}; "
            "`retention models use` or --force makes it current")}
    verdict = "forced" if worse > tolerance else "not worse than the tolerance allows"
    return {**out, "decision": "promoted", "reason": (
        f"{GATE_KIND} ROC-AUC {new_auc:.4f} against {now}'s {out['current_auc']:.4f} "
        f"({out['basis']}): {verdict} (tolerance {tolerance})")}


def train(events: pd.DataFrame, config: EvaluateConfig, root: Path, dataset: str,
          progress: Callable[[str], None] | None = None, refit_published: bool = True,
          tolerance: float = 0.005, force: bool = False) -> tuple[str, dict[str, Any]]:
    """Fit, score, refit, gate and publish a new version under ``root``; returns (version,
    metrics). The version is always written; it becomes current when the gate allows."""
    note = progress or (lambda _msg: None)
    started = time.time()
    work = root / ".work" / run_hash(events, config)
    config = replace(config, models=TRAINED_KINDS, checkpoint_dir=work)
    parts, plan = prepare(events, config, note)
    result = result_header(dataset, config, parts, plan)
    result["encoder"] = config.lora.to_dict()
    models = fit_models(parts, config, note)
    note(f"scoring the test cutoff ({len(parts['test']):,} customers, every model)")
    result["models"], _ = score_models(models, config.models, parts["val"], parts["test"])
    signature = data_signature(events)
    protocol = _protocol(config, result["test_cutoff"])
    result["data_signature"], result["protocol"] = signature, protocol
    thresholds = {k: v["threshold"] for k, v in result["models"].items()}
    if refit_published:
        chosen = tuple(models["served"].inputs)
        published, info = refit(events, config, chosen, models, note)
        thresholds.update(info.pop("thresholds"))
    else:
        published, info = models, {"refit": False}
    result["published"] = info
    result["promotion"] = promotion(root, events, parts, result, signature, protocol,
                                    tolerance, force)
    seconds = time.time() - started

    stage = staging_dir(root)
    published["encoder"].save(stage)
    published["served"].save(stage)
    end = data_bounds(events)[1]
    cfg = {"dataset": dataset, "definition": config.definition.to_dict(),
           "serialization_version": SERIALIZATION_VERSION, "lora": config.lora.to_dict(),
           "include_text": config.include_text, "features": list(FEATURE_COLUMNS),
           "step": config.step, "n_val": config.n_val, "test_cutoff": result["test_cutoff"],
           "refit": info["refit"],
           # the newest day whose events its training read (labels included)
           "trained_through": str((end if info["refit"] else pd.Timestamp(
               result["test_cutoff"], tz="UTC")).date()),
           "thresholds": thresholds}
    (stage / "config.json").write_text(json.dumps(cfg, indent=2))
    (stage / "metrics.json").write_text(json.dumps({**result, "train_seconds": seconds}, indent=2))
    card = CARD.render(version=next_version(root),
                       created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       dataset=dataset, n_events=f"{len(events):,}", d=config.definition,
                       lora=config.lora, serialization=SERIALIZATION_VERSION, r=result,
                       include_text=config.include_text, seconds=seconds,
                       machine=f"{platform.machine()} ({'GPU' if _cuda() else 'CPU'})")
    (stage / "MODEL_CARD.md").write_text(card)
    version = publish(root, stage, make_current=result["promotion"]["decision"] == "promoted")
    shutil.rmtree(work, ignore_errors=True)
    return version, result


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
