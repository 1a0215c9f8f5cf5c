"""Model directories: versions side by side, one marked current, rollback in one step.

Layout of a model root::

    ROOT/CURRENT                  name of the current version
    ROOT/versions/v0003/          adapter/, head.safetensors, calibration.json, stacker.json,
                                  lightgbm.txt / logreg.json (the stack's inputs),
                                  config.json, metrics.json, MODEL_CARD.md
    ROOT/.work/<run hash>/        checkpoints of an unfinished training run (resumable)

A version is written to a temporary folder and renamed into place, so a crash never leaves a
half-written version, and CURRENT only ever names a complete one.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finetune.churn_models import EncoderKind, StackKind
from finetune.features import compute_features
from finetune.labels import ChurnDefinition, as_cutoff, eligible_customers
from finetune.serialize import (
    SERIALIZATION_VERSION,
    SUPPORTED_VERSIONS,
    Serialized,
    Serializer,
)

VERSION_RE = re.compile(r"^v(\d{4})$")
SCORING_KINDS = ("served", "encoder")


class ModelNotFound(ValueError):
    pass


def versions(root: Path) -> list[str]:
    vdir = root / "versions"
    if not vdir.exists():
        return []
    return sorted(p.name for p in vdir.iterdir() if p.is_dir() and VERSION_RE.match(p.name))


def next_version(root: Path) -> str:
    existing = versions(root)
    n = int(VERSION_RE.match(existing[-1]).group(1)) + 1 if existing else 1  # type: ignore[union-attr]
    return f"v{n:04d}"


def current(root: Path) -> str:
    marker = root / "CURRENT"
    if not marker.exists():
        raise ModelNotFound(f"{root} holds no trained model (no CURRENT); run retention train")
    return marker.read_text().strip()


def set_current(root: Path, version: str) -> None:
    if version not in versions(root):
        raise ModelNotFound(f"{root} has no version {version!r}; it has: "
                            f"{', '.join(versions(root)) or 'none'}")
    tmp = root / "CURRENT.tmp"
    tmp.write_text(version + "\n")
    tmp.replace(root / "CURRENT")


def rollback(root: Path, to: str | None = None) -> str:
    """Make ``to`` (default: the version before the current one) current."""
    if to is None:
        names = versions(root)
        now = current(root)
        older = [v for v in names if v < now]
        if not older:
            raise ModelNotFound(f"{now} is the oldest version in {root}: nothing to roll back to")
        to = older[-1]
    set_current(root, to)
    return to


def resolve_version_dir(path: Path | str) -> Path:
    """A model root (uses CURRENT) or a version directory itself."""
    path = Path(path)
    if (path / "config.json").exists():
        return path
    if not path.exists():
        raise ModelNotFound(f"no model at {path}")
    return path / "versions" / current(path)


def publish(root: Path, staging: Path, make_current: bool = True) -> str:
    """Rename a fully written staging directory into the next version slot."""
    version = next_version(root)
    (root / "versions").mkdir(parents=True, exist_ok=True)
    staging.rename(root / "versions" / version)
    if make_current:
        set_current(root, version)
    return version


def staging_dir(root: Path) -> Path:
    path = root / ".staging"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


@dataclass
class TrainedModel:
    """What ``assistant`` scores with: features, serialization, the encoder and the served stack
    (whose inputs were chosen on validation: any of the encoder, LightGBM, logistic regression)."""

    directory: Path
    config: dict[str, Any]
    definition: ChurnDefinition
    encoder: EncoderKind
    served: StackKind
    serializer: Serializer

    @classmethod
    def load(cls, path: Path | str, device: str = "auto", precision: str = "fp32") -> TrainedModel:
        directory = resolve_version_dir(path)
        config = json.loads((directory / "config.json").read_text())
        version = str(config["serialization_version"])
        if version not in SUPPORTED_VERSIONS:
            raise ModelNotFound(f"{directory} was trained on serialization version {version}; "
                                f"this code reads {', '.join(SUPPORTED_VERSIONS)} and writes "
                                f"{SERIALIZATION_VERSION}: retrain it")
        d = config["definition"]
        definition = ChurnDefinition(**{**d, "activity_events": tuple(d["activity_events"])})
        encoder = EncoderKind.load(directory, device=device, precision=precision)
        served = StackKind.load(directory, encoder)
        serializer = Serializer(encoder.model.tokenizer, encoder.config.max_tokens,  # type: ignore[union-attr]
                                include_text=config.get("include_text", True), version=version)
        return cls(directory, config, definition, encoder, served, serializer)

    def snapshot(self, events: pd.DataFrame, cutoff: pd.Timestamp | str,
                 customers: list[str] | None = None) -> tuple[pd.DataFrame, list[Serialized]]:
        """Features and serialized texts at ``cutoff`` (eligible customers when none given)."""
        cutoff = as_cutoff(cutoff)
        ids = (pd.Index(customers, dtype="string") if customers is not None
               else eligible_customers(events, cutoff, self.definition))
        feats = compute_features(events, cutoff, ids, self.definition).reset_index()
        feats.insert(1, "cutoff", cutoff)
        serialized = self.serializer.serialize_snapshots(events, feats)
        return feats.assign(text=[s.text for s in serialized]), serialized

    def predict(self, frame: pd.DataFrame, kind: str = "served") -> np.ndarray:
        """``served``: what the service shows; ``encoder``: the encoder alone (diagnostics)."""
        if kind not in SCORING_KINDS:
            raise ValueError(f"kind must be one of {', '.join(SCORING_KINDS)}, not {kind!r}")
        model = self.served if kind == "served" else self.encoder
        return model.predict_proba(frame)
