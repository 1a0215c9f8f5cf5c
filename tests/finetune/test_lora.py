"""The LoRA churn encoder: it learns, it reloads exactly, it resumes exactly, it reads complaints.

One small model is trained once for the module (MiniLM, 160-token histories, 160 optimizer
steps on synthetic customers): about 10 minutes on 2 CPU cores (4.5 s a step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from finetune.contract import validate_events
from finetune.evaluate import EvaluateConfig, prepare
from finetune.lora import EncoderChurnModel, LoraConfig

pytestmark = pytest.mark.slow

TINY = LoraConfig(max_tokens=160, batch_size=16, lr=2e-3, epochs=1, max_steps=160, eval_every=40,
                  eval_examples=256, target_modules=("query", "key", "value", "dense"), seed=0)


@pytest.fixture(scope="module")
def parts(synthetic):
    events, _ = synthetic
    config = EvaluateConfig(models=("encoder",), lora=TINY, max_train_cutoffs=6)
    parts, _ = prepare(events, config, lambda _m: None)
    return events, parts


@pytest.fixture(scope="module")
def trained(parts):
    _, p = parts
    fit = p["fit"].sample(min(len(p["fit"]), 2560), random_state=0)
    return EncoderChurnModel(TINY).fit(fit["text"].tolist(), fit["label"].to_numpy(),
                                       p["val"]["text"].tolist(), p["val"]["label"].to_numpy())


def test_beats_chance_clearly(parts, trained):
    _, p = parts
    auc = roc_auc_score(p["test"]["label"], trained.predict_logits(p["test"]["text"].tolist()))
    assert auc > 0.7, auc


def test_save_reload_scores_identically(parts, trained, tmp_path):
    _, p = parts
    texts = p["test"]["text"].tolist()[:64]
    trained.save(tmp_path / "m")
    again = EncoderChurnModel.load(tmp_path / "m", device="cpu", merge=False)
    expected = trained.predict_logits(texts)
    np.testing.assert_allclose(again.predict_logits(texts), expected, rtol=0, atol=1e-6)
    # Serving folds the adapters into the weights: the same function up to float rounding.
    merged = EncoderChurnModel.load(tmp_path / "m", device="cpu")
    np.testing.assert_allclose(merged.predict_logits(texts), expected, rtol=0, atol=1e-5)
    adapter = sum(f.stat().st_size for f in (tmp_path / "m" / "adapter").iterdir())
    assert adapter < 10 * 2**20  # the adapter is a few MB, not a copy of the encoder


def test_scoring_uses_a_merged_copy_and_keeps_the_trainable_model(parts, trained, tmp_path):
    """Evaluation scores with the adapters folded in (the function that is served, cheaper per
    layer): the same logits as the trained network to float rounding, while the network itself
    keeps its adapters, so saving after scoring still writes them."""
    import torch

    _, p = parts
    texts = p["test"]["text"].tolist()[:64]
    unmerged = trained._logits(trained._encode(texts), torch.device("cpu"))
    np.testing.assert_allclose(trained.predict_logits(texts), unmerged, rtol=0, atol=1e-5)
    scorer = trained.scoring_model()
    assert scorer is not trained.model and scorer is trained.scoring_model()
    assert not any("lora_" in name for name, _ in scorer.named_parameters())
    assert any("lora_" in name for name, _ in trained.model.named_parameters())
    trained.save(tmp_path / "after")
    again = EncoderChurnModel.load(tmp_path / "after", device="cpu")
    assert again.scoring_model() is again.model  # loaded merged: nothing left to fold
    np.testing.assert_allclose(again.predict_logits(texts), unmerged, rtol=0, atol=1e-5)


def test_new_complaint_raises_risk(parts, trained):
    """Directional: the same customers, plus one fresh angry ticket, look riskier on average."""
    from finetune.encoders import load_tokenizer
    from finetune.features import compute_features
    from finetune.serialize import Serializer

    events, p = parts
    test = p["test"]
    stayers = test[test["label"] == 0].head(60)
    cutoff = stayers["cutoff"].iloc[0]
    definition = EvaluateConfig().definition
    complaint = pd.DataFrame({
        "customer_id": stayers["customer_id"].to_numpy(), "event": "ticket",
        "ts": cutoff - pd.Timedelta(days=2),
        "text": "The package was damaged and my refund never came. I think I'm done with this shop."})
    worse, _ = validate_events(pd.concat([events, complaint], ignore_index=True))
    serializer = Serializer(load_tokenizer("minilm"), TINY.max_tokens)

    def risk(ev: pd.DataFrame) -> np.ndarray:
        feats = compute_features(ev, cutoff, stayers["customer_id"], definition).reset_index()
        feats.insert(1, "cutoff", cutoff)
        texts = [s.text for s in serializer.serialize_snapshots(ev, feats)]
        return trained.predict_logits(texts)

    delta = risk(worse) - risk(events)
    assert delta.mean() > 0 and np.median(delta) > 0, delta


def test_interrupted_training_resumes_to_the_same_model(parts, tmp_path):
    _, p = parts
    fit, val = p["fit"].head(320), p["val"].head(64)
    cfg = LoraConfig(max_tokens=48, batch_size=16, epochs=1, max_steps=20, eval_every=5,
                     eval_examples=64, seed=3)
    args = (fit["text"].tolist(), fit["label"].to_numpy(), val["text"].tolist(),
            val["label"].to_numpy())
    straight = EncoderChurnModel(cfg).fit(*args)

    def crash(step: int, total: int, message: str) -> None:
        if step == 12:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        EncoderChurnModel(cfg).fit(*args, checkpoint_dir=tmp_path, progress=crash)
    assert (tmp_path / "last.pt").exists()
    resumed = EncoderChurnModel(cfg).fit(*args, checkpoint_dir=tmp_path)
    texts = val["text"].tolist()
    np.testing.assert_allclose(resumed.predict_logits(texts), straight.predict_logits(texts),
                               rtol=0, atol=1e-5)


def test_fused_kind_reads_the_aggregates_and_reloads(parts, tmp_path, monkeypatch):
    from dataclasses import replace

    from finetune import churn_models
    from finetune.churn_models import EncoderKind
    from finetune.features import FEATURE_COLUMNS

    _, p = parts
    fit, val = p["fit"].head(320), p["val"].head(128)
    cfg = replace(TINY, max_tokens=48, max_steps=20, eval_every=10, eval_examples=64,
                  n_numeric=len(FEATURE_COLUMNS))
    monkeypatch.setattr(churn_models, "MIN_EARLY_STOP", 5)
    kind = EncoderKind(cfg).fit(fit, fit["label"].to_numpy(), val, val["label"].to_numpy())
    # Stopped on the validation customers it did not train on; calibrated on all of them.
    unseen = int((~val["customer_id"].isin(set(fit["customer_id"]))).sum())
    assert 5 <= unseen < len(val), "fixture: validation should mix seen and unseen customers"
    assert kind.params["early_stopping_rows"] == unseen
    assert kind.params["early_stopping_unseen_only"] and kind.params["calibration_rows"] == len(val)
    probs = kind.predict_proba(val)
    assert probs.shape == (len(val),) and np.all((probs > 0) & (probs < 1))
    # The numeric part matters: scrambling the aggregates changes the scores.
    shuffled = val.copy()
    shuffled[list(FEATURE_COLUMNS)] = val[list(FEATURE_COLUMNS)].sample(frac=1, random_state=0).to_numpy()
    kind._cache.clear()
    assert not np.allclose(kind.predict_proba(shuffled), probs)
    kind.save(tmp_path)
    again = EncoderKind.load(tmp_path, device="cpu")
    np.testing.assert_allclose(again.predict_proba(val), probs, atol=1e-6)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's RSS")
def test_freed_heap_goes_back_to_the_os():
    """What training and bulk scoring free stays in glibc's heap until trimmed: 190 MB of
    freed mid-size arrays, behind one still in use, are returned by ``release_freed_heap``."""
    import platform

    from finetune.lora import release_freed_heap

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")

    def rss_mb() -> float:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                    if x.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    chunks = [np.ones(12_000) for _ in range(2_000)]  # 96 KB each: the heap, not mmap
    last = chunks[-1]  # the top of the heap stays in use, so free() alone cannot shrink it
    del chunks
    held = rss_mb()
    release_freed_heap()
    assert rss_mb() < held - 100, (held, rss_mb())
    assert last.sum() == 12_000


@pytest.fixture(scope="module")
def untrained():
    """The pretrained encoder with fresh adapters (nothing trained): enough for shape and
    equivalence checks of batching."""
    model = EncoderChurnModel(LoraConfig(max_tokens=160))
    model._build()
    return model


def test_micro_batches_give_the_whole_batchs_gradient(untrained):
    """On CPU a step runs in micro-batches to hold fewer activations; the gradient must be the
    whole batch's (each part's mean loss weighted by its share), or the memory saving would
    change what the model learns."""
    import torch

    rng = np.random.default_rng(0)
    rows = [rng.integers(1000, 20000, int(k)).tolist() for k in rng.integers(20, 160, 12)]
    y = rng.integers(0, 2, 12).astype(np.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    untrained.model.eval()  # no dropout: the two runs see the same function
    grads, losses = [], []
    for micro in (12, 5):
        untrained.config.micro_batch_size = micro
        untrained.model.zero_grad(set_to_none=True)
        losses.append(untrained._backward(rows, y, None, loss_fn, torch.device("cpu")))
        # (the pooler's adapters get none: pooling reads the hidden states, not the pooler)
        grads.append([p.grad.clone() for p in untrained.model.parameters()
                      if p.requires_grad and p.grad is not None])
    untrained.config.micro_batch_size = LoraConfig().micro_batch_size
    untrained.model.zero_grad(set_to_none=True)
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    assert len(grads[0]) == len(grads[1]) > 10
    for whole, parts in zip(*grads, strict=True):
        torch.testing.assert_close(parts, whole, rtol=1e-4, atol=1e-6)


def test_batch_width_is_rounded_up_and_padding_changes_no_score(untrained):
    """Widths are rounded to PAD_MULTIPLE (never past the token budget) so bulk scoring reuses
    its buffers; padded positions are masked, so a row's score does not depend on it."""
    import torch

    from finetune import lora

    device = torch.device("cpu")
    rows = [[101, 2000, 2001, 102], [101] + [2002] * 40 + [102]]
    ids, mask = untrained._collate(rows, device)
    assert ids.shape == mask.shape == (2, 64) and int(mask.sum()) == 4 + 42
    assert untrained._collate([[5] * 150], device)[0].shape == (1, 160)  # capped at the budget
    assert untrained._collate([[5] * 160], device)[0].shape == (1, 160)
    untrained.model.eval()
    padded = untrained._logits(rows, device)
    old = lora.PAD_MULTIPLE
    try:
        lora.PAD_MULTIPLE = 1
        unpadded = untrained._logits(rows, device)
    finally:
        lora.PAD_MULTIPLE = old
    np.testing.assert_allclose(padded, unpadded, rtol=0, atol=1e-5)


def test_attention_dropout_is_the_checkpoints_unless_set():
    """It can be switched off (PyTorch's fused CPU attention cannot apply it:
    bench/encoder_memory.py); the default keeps the checkpoint's own until validated."""
    from finetune.encoders import load_backbone

    assert LoraConfig().attention_dropout is None
    assert load_backbone("minilm", attention_dropout=0.0).config.attention_probs_dropout_prob == 0
    assert load_backbone("minilm").config.attention_probs_dropout_prob == pytest.approx(0.1)
