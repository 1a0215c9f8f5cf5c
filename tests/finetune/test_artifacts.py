"""Model directories stay readable across serialization versions, and say so when they are not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from finetune.artifacts import ModelNotFound, TrainedModel, resolve_version_dir
from finetune.serialize import SERIALIZATION_VERSION


def _with_version(src: Path, dst: Path, version: str) -> Path:
    shutil.copytree(src, dst)
    config_path = resolve_version_dir(dst) / "config.json"
    config = json.loads(config_path.read_text())
    config["serialization_version"] = version
    config_path.write_text(json.dumps(config))
    return dst


def test_a_model_serializes_as_it_was_trained(trained_model, tmp_path):
    """A v2 model keeps reading v2 texts (v3 would shift its inputs); new ones are v3."""
    assert TrainedModel.load(trained_model).serializer.version == SERIALIZATION_VERSION == "3"
    old = TrainedModel.load(_with_version(trained_model, tmp_path / "v2", "2"))
    assert old.serializer.version == "2"
    with pytest.raises(ModelNotFound, match="serialization version 1.*retrain"):
        TrainedModel.load(_with_version(trained_model, tmp_path / "v1", "1"))


def test_a_model_path_may_be_a_string_and_a_missing_one_is_named(trained_model, tmp_path):
    assert TrainedModel.load(str(trained_model)).directory == resolve_version_dir(trained_model)
    with pytest.raises(ModelNotFound, match="no model at .*nowhere"):
        TrainedModel.load(str(tmp_path / "nowhere"))
