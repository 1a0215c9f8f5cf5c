"""CLI commands that make and judge models: evaluate, train, and the model registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from finetune.artifacts import (
    SCORING_KINDS,
    ModelNotFound,
    TrainedModel,
    current,
    rollback,
    set_current,
    versions,
)
from finetune.churn_models import ENCODER_MAX_EXAMPLES, STACK_BASES
from finetune.evaluate import (
    DEFAULT_MODELS,
    MODEL_KINDS,
    EvaluateConfig,
    add_intervals,
    evaluate_origins,
)
from finetune.labels import ChurnDefinition, churn_labels, plan_backtest
from finetune.loaders import output_format, write_events, write_text_atomic
from finetune.lora import LoraConfig
from finetune.metrics import evaluate_predictions
from finetune.train import train
from service.cli_common import clean_errors, err, load_cli_events, out, progress_bar

models_app = typer.Typer(help="List trained model versions, pick the current one, roll back.",
                         no_args_is_help=True)

# Options shared by evaluate and train.
Events = Annotated[Path | None, typer.Option(help="events file (.csv, .csv.gz, .parquet)")]
Horizon = Annotated[int, typer.Option(min=1, help="churn horizon in days")]
Kind = Annotated[str, typer.Option(help="churn definition: inactivity or explicit")]
Lookback = Annotated[int, typer.Option(min=1, help="eligibility: an order in these days")]
Step = Annotated[int, typer.Option(min=1, help="days between training cutoffs")]
Activity = Annotated[str, typer.Option(help="events that count as buying, comma-separated")]
MinPrior = Annotated[int, typer.Option(min=1, help="activity events needed before the cutoff")]
MaxCutoffs = Annotated[int | None, typer.Option(help="keep the latest N training cutoffs")]
Encoder = Annotated[str, typer.Option(help="minilm, multilingual, or a local HF model path")]
MaxTokens = Annotated[int, typer.Option(min=16, help="token budget of a serialized history")]
NoText = Annotated[bool, typer.Option("--no-text", help="blank review/ticket text (ablation)")]
Epochs = Annotated[int, typer.Option(min=1, help="passes over the training snapshots")]
MaxSteps = Annotated[int | None, typer.Option(help="stop after this many optimizer steps")]
BatchSize = Annotated[int, typer.Option(min=1, help="training batch size")]
Lr = Annotated[float, typer.Option(help="learning rate of the LoRA adapters and head")]
LoraR = Annotated[int, typer.Option(min=1, help="LoRA rank")]
LoraAlpha = Annotated[int, typer.Option(min=1, help="LoRA alpha")]
LoraDropout = Annotated[float, typer.Option(min=0.0, max=0.9, help="LoRA dropout")]
Targets = Annotated[str, typer.Option(help="LoRA target modules, comma-separated")]
MaxExamples = Annotated[int, typer.Option(
    min=0, help="train the encoder on at most N snapshots, drawn from at least half of the "
    "customers; the other customers' snapshots calibrate it and fit the stack; 0: all of them")]
Seed = Annotated[int, typer.Option(help="random seed; same seed, same model")]
Maps = Annotated[list[str] | None, typer.Option("--map", help="canonical=source column")]
MappingFile = Annotated[Path | None, typer.Option(help="JSON column mapping file")]
SqlUrl = Annotated[str | None, typer.Option(help="SQLAlchemy URL, e.g. sqlite:///shop.db")]
Query = Annotated[str | None, typer.Option(help="SQL query returning events")]
DropInvalid = Annotated[bool, typer.Option(help="drop and count invalid rows instead of failing")]
TrainWindow = Annotated[str, typer.Option(help=(
    "training cutoffs to learn from: auto (the newest N, chosen on validation), all, or N"))]


BtydFeatures = Annotated[str, typer.Option(help=(
    "BG/NBD's P(alive) and P(no purchase) as features of LightGBM and logistic regression: "
    "auto (each model chooses on validation), on or off"))]


def _btyd(value: str) -> bool | None:
    value = value.strip().lower()
    choices = {"auto": None, "on": True, "off": False}
    if value not in choices:
        raise ValueError(f"--btyd-features must be auto, on or off, not {value!r}")
    return choices[value]


Served = Annotated[str, typer.Option(help=(
    "the served stack's inputs: auto (chosen on validation) or a comma-separated subset of "
    + ", ".join(STACK_BASES)))]


def _served(value: str) -> tuple[str, ...] | None:
    value = value.strip().lower()
    if value == "auto":
        return None
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in STACK_BASES]
    if not names or unknown:
        raise ValueError(f"--served must be auto or a comma-separated subset of "
                         f"{', '.join(STACK_BASES)}, not {value!r}")
    return tuple(n for n in STACK_BASES if n in names)


def _window(value: str) -> str | int:
    value = value.strip().lower()
    if value in ("auto", "all"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"--train-window must be auto, all or a whole number of cutoffs, not {value!r}")


def _definition(kind: str, horizon: int, lookback: int, activity: str,
                min_prior: int) -> ChurnDefinition:
    return ChurnDefinition(kind=kind, horizon=horizon, lookback=lookback,  # type: ignore[arg-type]
                           activity_events=tuple(a.strip() for a in activity.split(",")),
                           min_prior=min_prior)


def _lora(encoder: str, max_tokens: int, epochs: int, max_steps: int | None, batch_size: int,
          lr: float, lora_r: int, lora_alpha: int, lora_dropout: float, targets: str,
          seed: int) -> LoraConfig:
    return LoraConfig(encoder=encoder, max_tokens=max_tokens, epochs=epochs, max_steps=max_steps,
                      batch_size=batch_size, lr=lr, lora_r=lora_r, lora_alpha=lora_alpha,
                      lora_dropout=lora_dropout, seed=seed,
                      target_modules=tuple(t.strip() for t in targets.split(",") if t.strip()))


def print_table(result: dict[str, Any]) -> None:
    out.print(f"[bold]{result['dataset']}[/]: horizon {result['horizon']} days, test cutoff "
              f"{result['test_cutoff']}, {result['n_train']:,} training snapshots, "
              f"{result['n_test']:,} test customers, churn rate {result['test_churn_rate']:.1%}")
    table = Table(show_header=True, header_style="bold")
    cols = ("auc", "pr_auc", "brier", "ece", "lift10", "recall10", "f1")
    table.add_column("model")
    for col in cols:
        table.add_column(col, justify="right")
    for name, metrics in result["models"].items():
        table.add_row(name, *(f"{metrics[c]:.3f}" for c in cols))
    out.print(table)
    for name, m in result["models"].items():  # below the table: it stays narrow enough to read
        if "auc_ci" in m:
            gap = (f"; {m['auc_diff']:+.3f} vs {m['reference']} ({m['auc_diff_ci'][0]:+.3f} to "
                   f"{m['auc_diff_ci'][1]:+.3f})" if "auc_diff" in m else "")
            out.print(f"{name}: auc 95% CI {m['auc_ci'][0]:.3f}-{m['auc_ci'][1]:.3f}{gap}")
    served = result["models"].get("served", {}).get("params", {}).get("choice")
    if served:
        out.print(f"served: {served['reason']}", highlight=False, soft_wrap=True)
    for note in result.get("notes", []):
        out.print(f"[dim]note: {note}[/]")


def print_origins(result: dict[str, Any]) -> None:
    """Each origin's table, then every model's mean and spread over the origins."""
    for one in result["origins"]:
        print_table(one)
    summary = result["summary"]
    out.print(f"[bold]{summary['n_origins']} origins[/] (test cutoffs "
              f"{', '.join(summary['test_cutoffs'])}): mean over origins")
    table = Table("model", "auc mean", "auc sd", "auc min", "ece mean", "ece max",
                  "vs best baseline", header_style="bold")
    for name, m in sorted(summary["models"].items(), key=lambda kv: -kv[1]["auc_mean"]):
        gap = m.get("auc_minus_best_baseline")
        table.add_row(name, f"{m['auc_mean']:.3f}", f"{m['auc_std']:.3f}", f"{m['auc_min']:.3f}",
                      f"{m['ece_mean']:.3f}", f"{m['ece_max']:.3f}",
                      "" if gap is None else f"{gap:+.3f}")
    out.print(table)
    out.print(f"winner by origin: {', '.join(summary['winner_by_origin'])}; best single "
              f"baseline on average: {summary.get('best_baseline', '-')}", highlight=False)
    if summary.get("served_by_origin"):
        out.print(f"served by origin: {', '.join(summary['served_by_origin'])}", highlight=False)


def _emit(result: dict[str, Any], as_json: bool, out_file: Path | None,
          preds: pd.DataFrame | None = None, preds_file: Path | None = None) -> None:
    if preds_file is not None and preds is not None:
        write_events(preds, preds_file)
    if out_file:
        write_text_atomic(json.dumps(result, indent=2), out_file)
    if as_json:
        sys.stdout.write(json.dumps(result) + "\n")
    elif "origins" in result:
        print_origins(result)
    else:
        print_table(result)


def _evaluate_saved(model_dir: Path, frame, name: str,
                    kinds: tuple[str, ...]) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score a trained model on the test cutoff of these events (data end - its horizon)."""
    model = TrainedModel.load(model_dir)
    plan = plan_backtest(frame, model.definition, step=model.config["step"])
    feats, _ = model.snapshot(frame, plan.test_cutoff)
    ids = pd.Index(feats["customer_id"], dtype="string")
    y = churn_labels(frame, plan.test_cutoff, ids, model.definition).to_numpy()
    result: dict[str, Any] = {"dataset": name, "horizon": model.definition.horizon,
                              "test_cutoff": str(plan.test_cutoff.date()), "n_train": 0,
                              "n_test": len(feats), "test_churn_rate": float(y.mean()),
                              "model_dir": str(model.directory), "models": {}}
    preds = pd.DataFrame({"customer_id": feats["customer_id"].to_numpy(),
                          "cutoff": plan.test_cutoff, "label": y})
    for kind in kinds:
        threshold = model.config["thresholds"].get(kind, 0.5)
        preds[kind] = model.predict(feats, kind)
        result["models"][kind] = evaluate_predictions(y, preds[kind].to_numpy(), threshold)
    add_intervals(result["models"], preds)
    return result, preds


def evaluate_cmd(
    events: Events = None, horizon: Horizon = 90,
    models: Annotated[str, typer.Option(help="comma-separated: " + ", ".join(MODEL_KINDS))]
    = ",".join(DEFAULT_MODELS),
    kind: Kind = "inactivity", lookback: Lookback = 365, step: Step = 30,
    activity: Activity = "order", min_prior: MinPrior = 1, max_train_cutoffs: MaxCutoffs = None,
    encoder: Encoder = "minilm", max_tokens: MaxTokens = 256, no_text: NoText = False,
    epochs: Epochs = 1, max_steps: MaxSteps = None, batch_size: BatchSize = 16, lr: Lr = 1e-3,
    lora_r: LoraR = 8, lora_alpha: LoraAlpha = 16, lora_dropout: LoraDropout = 0.1,
    target_modules: Targets = "query,key,value,dense",
    encoder_max_examples: MaxExamples = ENCODER_MAX_EXAMPLES, seed: Seed = 0,
    train_window: TrainWindow = "auto", btyd_features: BtydFeatures = "auto",
    origins: Annotated[int, typer.Option(min=1, help=(
        "rolling-origin backtest: this many test cutoffs (data end - horizon, then 30 days "
        "earlier each), each trained only on what came before it; reports the mean and spread"))]
    = 1,
    model: Annotated[Path | None, typer.Option(help="evaluate this trained model instead")] = None,
    map_: Maps = None, mapping: MappingFile = None, sql_url: SqlUrl = None, query: Query = None,
    drop_invalid: DropInvalid = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="also write the JSON here")] = None,
    predictions: Annotated[Path | None, typer.Option(
        help="also write each test customer's label and probabilities (.parquet or .csv), "
        "e.g. to compare two runs with bench/paired_compare.py")] = None,
) -> None:
    """Backtest models on the honest point-in-time protocol and report test metrics."""
    names = tuple(m.strip() for m in models.split(",") if m.strip())
    unknown = [m for m in names if m not in MODEL_KINDS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(MODEL_KINDS)}")
    if predictions is not None:
        output_format(predictions)  # a bad path fails now, not after the training
    frame, name = load_cli_events(events, sql_url, query, map_, mapping, drop_invalid)
    if model is not None:
        asked = tuple(n for n in names if n in SCORING_KINDS)
        kinds = asked if asked and names != DEFAULT_MODELS else SCORING_KINDS
        with progress_bar(None, "scoring the trained model"):
            result, preds = _evaluate_saved(model, frame, name, kinds)
        return _emit(result, as_json, out_file, preds, predictions)
    config = EvaluateConfig(
        definition=_definition(kind, horizon, lookback, activity, min_prior), step=step,
        models=names, max_train_cutoffs=max_train_cutoffs, include_text=not no_text,
        encoder_max_examples=encoder_max_examples, train_window=_window(train_window),
        btyd=_btyd(btyd_features),
        lora=_lora(encoder, max_tokens, epochs, max_steps, batch_size, lr, lora_r, lora_alpha,
                   lora_dropout, target_modules, seed))
    with progress_bar(None, "evaluating") as tracker:
        config.step_progress = tracker.steps
        result, preds = evaluate_origins(frame, config, origins, dataset=name, progress=tracker)
    _emit(result, as_json, out_file, preds, predictions)


def train_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="model root (versions side by side)")],
    events: Events = None, horizon: Horizon = 90, kind: Kind = "inactivity",
    lookback: Lookback = 365, step: Step = 30, activity: Activity = "order",
    min_prior: MinPrior = 1, max_train_cutoffs: MaxCutoffs = None, encoder: Encoder = "minilm",
    max_tokens: MaxTokens = 256, no_text: NoText = False, epochs: Epochs = 1,
    max_steps: MaxSteps = None, batch_size: BatchSize = 16, lr: Lr = 1e-3, lora_r: LoraR = 8,
    lora_alpha: LoraAlpha = 16, lora_dropout: LoraDropout = 0.1,
    target_modules: Targets = "query,key,value,dense",
    encoder_max_examples: MaxExamples = ENCODER_MAX_EXAMPLES, seed: Seed = 0,
    train_window: TrainWindow = "auto",
    btyd_features: BtydFeatures = "auto", served: Served = "auto", map_: Maps = None,
    mapping: MappingFile = None, sql_url: SqlUrl = None, query: Query = None,
    drop_invalid: DropInvalid = False,
    refit: Annotated[bool, typer.Option(help="refit the published model on the newest "
                                             "labelled cutoffs (data end - horizon)")] = True,
    tolerance: Annotated[float, typer.Option(min=0.0, max=1.0, help=(
        "promotion gate: become current unless the backtest ROC-AUC is this much below the "
        "current version's on the same data and protocol"))] = 0.005,
    force: Annotated[bool, typer.Option(help="become current whatever the gate says")] = False,
) -> None:
    """Backtest every model and the served stack chosen on validation (the card's figures), refit
    the served stack on the newest labelled cutoffs, and publish a new version; it becomes
    current when it is not worse than the current one (the gate), or with --force."""
    served_inputs = _served(served)
    frame, name = load_cli_events(events, sql_url, query, map_, mapping, drop_invalid)
    config = EvaluateConfig(
        definition=_definition(kind, horizon, lookback, activity, min_prior), step=step,
        max_train_cutoffs=max_train_cutoffs, include_text=not no_text,
        encoder_max_examples=encoder_max_examples, train_window=_window(train_window),
        served_inputs=served_inputs, btyd=_btyd(btyd_features),
        lora=_lora(encoder, max_tokens, epochs, max_steps, batch_size, lr, lora_r, lora_alpha,
                   lora_dropout, target_modules, seed))
    with progress_bar(None, "training") as tracker:
        config.step_progress = tracker.steps
        version, result = train(frame, config, out_dir, dataset=name, progress=tracker,
                                refit_published=refit, tolerance=tolerance, force=force)
    print_table(result)
    print_publication(out_dir, version, result)


def print_publication(root: Path, version: str, result: dict[str, Any]) -> None:
    """Where the version went, what it was refitted on, and the gate's decision."""
    pub, gate = result["published"], result["promotion"]
    if pub.get("refit"):
        out.print(f"refitted on cutoffs {pub['fit_cutoffs'][0]} .. {pub['val_cutoffs'][-1]} "
                  f"(newest labelled: data end - {result['horizon']} days); the table above is "
                  "the backtest fit", highlight=False, soft_wrap=True)
    state = "current" if gate["decision"] == "promoted" else f"not current: {gate['decision']}"
    out.print(f"published {root / 'versions' / version} ({state})", highlight=False,
              soft_wrap=True)
    out.print(f"promotion: {gate['reason']}", highlight=False, soft_wrap=True)


@models_app.command("list")
@clean_errors
def models_list(root: Annotated[Path, typer.Argument(help="model root")]) -> None:
    """Versions with their test ROC-AUC; the current one is marked."""
    names = versions(root)
    if not names:
        raise ModelNotFound(f"{root} holds no model versions")
    now = current(root) if (root / "CURRENT").exists() else ""
    table = Table("version", "current", "trained on", "served", "served auc", "encoder auc")
    for v in names:
        metrics = json.loads((root / "versions" / v / "metrics.json").read_text())
        auc = {k: f"{m['auc']:.3f}" for k, m in metrics["models"].items()}
        served = metrics["models"].get("served")
        table.add_row(v, "*" if v == now else "", metrics["dataset"],
                      served["params"]["choice"]["chosen"] if served else "hybrid",
                      auc.get("served", auc.get("hybrid", "")), auc.get("encoder", ""))
    out.print(table)


@models_app.command("use")
@clean_errors
def models_use(root: Annotated[Path, typer.Argument()], version: Annotated[str, typer.Argument()]) -> None:
    """Make VERSION current."""
    set_current(root, version)
    err.print(f"current: {version}")


@models_app.command("rollback")
@clean_errors
def models_rollback(root: Annotated[Path, typer.Argument()],
                    to: Annotated[str | None, typer.Option(help="version to return to")] = None) -> None:
    """Make the previous version (or --to VERSION) current."""
    err.print(f"current: {rollback(root, to)}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(clean_errors(evaluate_cmd))
    app.command("train")(clean_errors(train_cmd))
    app.add_typer(models_app, name="models")
