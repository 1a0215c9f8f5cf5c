"""An encoder that cannot read the customers' language is reported, not silently trained blind."""

from __future__ import annotations

import pytest

from finetune.encoders import UNKNOWN_WARN, load_tokenizer, unknown_share
from finetune.evaluate import EvaluateConfig, prepare, text_warning
from finetune.lora import LoraConfig


@pytest.fixture(scope="module")
def minilm():
    return load_tokenizer("minilm")


def test_unknown_share_of_english_and_chinese(minilm):
    assert unknown_share(minilm, ["Great quality, exactly as described.",
                                  "The package for O123 was damaged."]) == 0.0
    share = unknown_share(minilm, ["订单O000397发错货了，客服回复也慢。", "质量很好，和描述一致。"])
    assert share > 0.3  # most Chinese characters are not in MiniLM's English vocabulary
    assert unknown_share(minilm, []) == 0.0


def test_the_english_encoder_warns_on_chinese_text(synthetic):
    events, _ = synthetic  # 30% Chinese-speaking customers
    warning = text_warning(events, "minilm")
    assert warning and "'minilm'" in warning and "--encoder multilingual" in warning
    share = int(warning.split("%")[0]) / 100
    assert share > UNKNOWN_WARN
    english = events[~events["text"].fillna("").str.contains(r"[\u4e00-\u9fff]")]
    assert text_warning(english, "minilm") is None
    assert text_warning(events.assign(text=None), "minilm") is None
    assert text_warning(events.drop(columns=["text"]), "minilm") is None


def test_the_warning_reaches_the_run_notes(synthetic):
    events, _ = synthetic
    config = EvaluateConfig(models=("encoder",), lora=LoraConfig(max_tokens=32),
                            max_train_cutoffs=2)
    notes: list[str] = []
    _, plan = prepare(events, config, notes.append)
    assert any("unknown to the 'minilm'" in n for n in plan.notes)
    assert any("unknown to the 'minilm'" in n for n in notes)
    blind = EvaluateConfig(models=("encoder",), lora=LoraConfig(max_tokens=32),
                           max_train_cutoffs=2, include_text=False)
    _, plan = prepare(events, blind, lambda _m: None)
    assert not any("unknown" in n for n in plan.notes)  # --no-text: nothing to read anyway
