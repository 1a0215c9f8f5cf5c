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


def test_the_text_models_read_a_capped_sample_of_validation_and_all_of_the_test(trained_model):
    """The shared model was trained with ``encoder_val_max_rows=150``, fewer than validation's
    rows: the encoder stopped and the served stack was chosen on that sample (every candidate on
    the same rows) and the stacking rows pooled with it are those of the sample."""
    import json

    from finetune.artifacts import resolve_version_dir

    metrics = json.loads((resolve_version_dir(trained_model) / "metrics.json").read_text())
    assert metrics["n_val"] > 150
    assert metrics["models"]["served"]["params"]["stack_rows"]["validation"] <= 150
    assert metrics["models"]["encoder"]["params"]["early_stopping_rows"] <= 150
