"""``retention train``: fit every kind on the backtest, then publish a model version with its card.

The model card records the data, the protocol and the test metrics of the encoder and hybrid next
to the baselines trained on the very same snapshots, so nobody has to trust a number without its
comparison. An interrupted run resumes from ``ROOT/.work/<hash>/last.pt``.
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

from finetune.artifacts import next_version, publish, staging_dir
from finetune.baselines import BASELINES
from finetune.evaluate import (
    EvaluateConfig,
    fit_models,
    prepare,
    result_header,
    score_models,
)
from finetune.features import FEATURE_COLUMNS
from finetune.serialize import SERIALIZATION_VERSION

# The published model: the baselines for the card, the encoder and its stack with LightGBM.
TRAINED_KINDS = (*BASELINES, "encoder", "hybrid")
CARD = Template("""# Churn model {{ version }}

Trained {{ created }} on `{{ dataset }}` ({{ n_events }} events) with Retention Assistant.

## What it predicts
Probability that an eligible customer (an {{ d.activity_events|join('/') }} in the {{ d.lookback }}
days before the cutoff, at least {{ d.min_prior }} before it) churns: {{ d.kind }} within
{{ d.horizon }} days after the cutoff.

## Model
- Encoder `{{ lora.encoder }}` with LoRA (r={{ lora.lora_r }}, alpha={{ lora.lora_alpha }},
  dropout={{ lora.lora_dropout }}, modules {{ lora.target_modules|join(', ') }}), mean pooling,
  linear head, trained on {{ r.models.encoder.params.encoder_rows }} fit snapshots of
  {{ r.models.encoder.params.encoder_customers }} customers; Platt calibration fitted on
  {{ r.models.encoder.params.calibration_rows }} rows no model was fitted or tuned on (every
  snapshot of the other fit customers, else validation).
- Serialization v{{ serialization }}: {{ lora.max_tokens }}-token budget, oldest events dropped
  first, events before quotes; review/ticket text {{ 'included' if include_text else 'blanked' }}.
- Hybrid: logistic stack of the encoder logit and LightGBM's, fitted on the same kind of rows
  ({{ r.models.hybrid.params.stack_rows.validation }} validation rows and
  {{ r.models.hybrid.params.stack_rows.held_out_fit }} held-out fit rows with cross-fitted
  LightGBM scores).

## Protocol
Test cutoff {{ r.test_cutoff }} (data end - horizon); training cutoffs
{{ r.backtest.fit_cutoffs|join(', ') }}; validation {{ r.backtest.val_cutoffs|join(', ') }}.
{{ r.n_fit }} fit, {{ r.n_val }} validation, {{ r.n_test }} test customers; test churn rate
{{ '%.1f'|format(100 * r.test_churn_rate) }}%.

## Test metrics
| model | ROC-AUC (95% CI) | PR-AUC | Brier | ECE | lift@10% | recall@10% | F1 |
|---|---|---|---|---|---|---|---|
{% for name, m in r.models.items() -%}
| {{ name }} | {{ '%.3f'|format(m.auc) }} ({{ '%.3f'|format(m.auc_ci[0]) }}-{{ '%.3f'|format(m.auc_ci[1]) }}) | {{ '%.3f'|format(m.pr_auc) }} | {{ '%.3f'|format(m.brier) }} | {{ '%.3f'|format(m.ece) }} | {{ '%.2f'|format(m.lift10) }} | {{ '%.3f'|format(m.recall10) }} | {{ '%.3f'|format(m.f1) }} |
{% endfor %}
{% if r.models.hybrid.auc_diff is defined -%}
Hybrid minus LightGBM ROC-AUC: {{ '%+.4f'|format(r.models.hybrid.auc_diff) }} (95% CI
{{ '%+.4f'|format(r.models.hybrid.auc_diff_ci[0]) }} to {{ '%+.4f'|format(r.models.hybrid.auc_diff_ci[1]) }},
paired bootstrap over test customers; better in {{ '%.0f'|format(100 * r.models.hybrid.p_better) }}% of resamples).
{% endif %}
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
                              "include_text": config.include_text}, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def train(events: pd.DataFrame, config: EvaluateConfig, root: Path, dataset: str,
          progress: Callable[[str], None] | None = None) -> tuple[str, dict[str, Any]]:
    """Fit, score, and publish a new version under ``root``; returns (version, metrics)."""
    note = progress or (lambda _msg: None)
    started = time.time()
    work = root / ".work" / run_hash(events, config)
    config = replace(config, models=TRAINED_KINDS, checkpoint_dir=work)
    parts, plan = prepare(events, config, note)
    result = result_header(dataset, config, parts, plan)
    result["encoder"] = config.lora.to_dict()
    models = fit_models(parts, config, note)
    result["models"], _ = score_models(models, config.models, parts["val"], parts["test"])
    seconds = time.time() - started

    stage = staging_dir(root)
    models["encoder"].save(stage)
    models["hybrid"].save(stage)
    cfg = {"dataset": dataset, "definition": config.definition.to_dict(),
           "serialization_version": SERIALIZATION_VERSION, "lora": config.lora.to_dict(),
           "include_text": config.include_text, "features": list(FEATURE_COLUMNS),
           "step": config.step, "n_val": config.n_val, "test_cutoff": result["test_cutoff"],
           "thresholds": {k: v["threshold"] for k, v in result["models"].items()}}
    (stage / "config.json").write_text(json.dumps(cfg, indent=2))
    (stage / "metrics.json").write_text(json.dumps({**result, "train_seconds": seconds}, indent=2))
    card = CARD.render(version=next_version(root),
                       created=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                       dataset=dataset, n_events=f"{len(events):,}", d=config.definition,
                       lora=config.lora, serialization=SERIALIZATION_VERSION, r=result,
                       include_text=config.include_text, seconds=seconds,
                       machine=f"{platform.machine()} ({'GPU' if _cuda() else 'CPU'})")
    (stage / "MODEL_CARD.md").write_text(card)
    version = publish(root, stage)
    shutil.rmtree(work, ignore_errors=True)
    return version, result


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
