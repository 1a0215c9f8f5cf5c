"""A pretrained encoder with LoRA adapters and a small head that reads a serialized history.

Training is built for 2 CPU cores first and a GPU when there is one: length-bucketed batches (no
padding waste), early stopping on validation PR-AUC, bf16 on CUDA, and checkpoints that resume
to the exact same model (every step reseeds from (seed, step), and batch order is a function of
(seed, epoch)).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score
from torch import nn

from finetune.encoders import load_backbone, load_tokenizer

# Scoring this many rows or more hands the freed heap back afterwards (``release_freed_heap``);
# a single customer's request does not pay for the walk.
TRIM_AFTER_ROWS = 1000


def release_freed_heap() -> None:
    """Give the memory freed by training or bulk scoring back to the OS (glibc's
    ``malloc_trim``; nothing elsewhere). Variable-length CPU batches fragment the heap: a
    25,000-customer ``retention train`` went from 1.4 to 4.4-4.8 GB of RSS once the encoder
    trained, and peaked at 7.4 GB. In a focused run (20 steps, then 3,000 rows scored at 256
    tokens) trimming after training lowered the scoring peak from 4.24 to 3.45 GB with no
    measurable time cost; a fixed mmap threshold saved more but made training 40-50% slower."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs a subprocess)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None

Progress = Callable[[int, int, str], None]
PAD_MULTIPLE = 32  # batch widths are rounded up to this (see ``_collate``)


@dataclass
class LoraConfig:
    encoder: str = "minilm"
    max_tokens: int = 256
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    # All attention and feed-forward projections: on synthetic data this learned far faster per
    # step than query/value alone (val PR-AUC 0.71 vs 0.63 at about 200 steps). lr 2e-3 blew the
    # logit scale up on Online Retail (test AUC 0.64); 1e-3 gave val AUC 0.73, 3e-4 0.71.
    target_modules: tuple[str, ...] = ("query", "key", "value", "dense")
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 16
    # On CPU a batch is computed in micro-batches of this size and their gradients summed (same
    # loss, same step): a 16-row step at 256 tokens held 1.94 GB of activations instead of 3.34
    # GB and took 3.14 s instead of 4.45 s (bench/encoder_memory.py). A GPU computes the whole
    # batch.
    micro_batch_size: int = 8
    # Dropout on the attention probabilities; None keeps the checkpoint's own (0.1 for MiniLM
    # and e5). PyTorch's fused CPU attention cannot apply it, so with it every layer falls back
    # to the unfused path that stores the whole attention matrix: at 0.0 a 16-row step took
    # 2.72 s instead of 3.92 s and held 1 GB less (bench/encoder_memory.py). Not the default:
    # on the demo's validation 0.0 scored 0.8261 against 0.8287 (test: 0.8434 against 0.8417,
    # within noise), so the choice a user may read does not favour it (``--quality``).
    attention_dropout: float | None = None
    # One pass, as the CLI: every reported figure trained one epoch (early stopping on held-out
    # customers decides within it).
    epochs: int = 1
    max_steps: int | None = None
    eval_every: int = 200
    eval_examples: int = 1024
    patience: int = 3
    seed: int = 0
    device: str = "auto"
    n_numeric: int = 0  # > 0: numeric aggregates are fused into the head (the "fused" kind)

    def to_dict(self) -> dict:
        return {**asdict(self), "target_modules": list(self.target_modules)}

    @classmethod
    def from_dict(cls, data: dict) -> LoraConfig:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        data["target_modules"] = tuple(data.get("target_modules", cls.target_modules))
        return cls(**data)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ChurnClassifier(nn.Module):
    """Backbone (with LoRA) -> masked mean pooling -> dropout [+ numeric features] -> one logit."""

    def __init__(self, backbone: nn.Module, hidden: int, dropout: float = 0.1,
                 n_numeric: int = 0) -> None:
        super().__init__()
        self.backbone = backbone
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden + n_numeric, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                numeric: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = self.drop((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        if numeric is not None:
            pooled = torch.cat([pooled, numeric.to(pooled.dtype)], dim=1)
        return self.head(pooled).squeeze(-1).float()


@dataclass
class NumericScaler:
    """Signed log, median imputation and standardisation, fitted on training rows only."""

    medians: list[float] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)

    def fit(self, X: np.ndarray) -> NumericScaler:
        z = np.sign(X) * np.log1p(np.abs(X))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-empty columns -> median 0
            med = np.nan_to_num(np.nanmedian(z, axis=0))
        z = np.where(np.isnan(z), med, z)
        self.medians, self.means = med.tolist(), z.mean(0).tolist()
        self.stds = np.where(z.std(0) > 1e-9, z.std(0), 1.0).tolist()
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        z = np.sign(X) * np.log1p(np.abs(X))
        z = np.where(np.isnan(z), np.asarray(self.medians), z)
        return ((z - np.asarray(self.means)) / np.asarray(self.stds)).astype(np.float32)


def bucketed_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                     pool: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length inside pools of ``pool`` batches, shuffle the batch order."""
    perm = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(perm), batch_size * pool):
        chunk = perm[start:start + batch_size * pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


@dataclass
class EncoderChurnModel:
    """fit / predict_logits / save / load, on serialized texts."""

    config: LoraConfig = field(default_factory=LoraConfig)
    model: ChurnClassifier | None = None
    tokenizer: object | None = None
    history: list[dict] = field(default_factory=list)
    scaler: NumericScaler | None = None
    score_batch_size: int = 64  # bulk scoring raises it on a GPU
    # The adapters folded into a copy after training (``scoring_model``); None until asked.
    _merged: ChurnClassifier | None = field(default=None, repr=False, compare=False)

    def _numeric(self, numeric: np.ndarray | None, n: int) -> np.ndarray | None:
        if not self.config.n_numeric:
            return None
        if numeric is None or numeric.shape != (n, self.config.n_numeric):
            raise ValueError(f"this model fuses {self.config.n_numeric} numeric features: pass "
                             f"an array of shape ({n}, {self.config.n_numeric})")
        assert self.scaler is not None
        return self.scaler.transform(np.asarray(numeric, dtype=np.float64))

    # ---- construction -------------------------------------------------------------------------
    def _build(self) -> None:
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.tokenizer = load_tokenizer(cfg.encoder)
        backbone = load_backbone(cfg.encoder, attention_dropout=cfg.attention_dropout)
        peft_cfg = PeftLoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                  lora_dropout=cfg.lora_dropout,
                                  target_modules=list(cfg.target_modules), bias="none")
        backbone = get_peft_model(backbone, peft_cfg)
        self.model = ChurnClassifier(backbone, backbone.config.hidden_size,
                                     n_numeric=cfg.n_numeric)

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        assert self.tokenizer is not None
        return self.tokenizer(list(texts), truncation=True, max_length=self.config.max_tokens)[
            "input_ids"]

    def _collate(self, ids: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids and mask. The width is rounded up to a multiple of ``PAD_MULTIPLE``
        (never past the token budget): scoring walks rows sorted by length, and a new width every
        batch asked the allocator for slightly larger blocks each time, so the heap only grew
        (2,000 rows: working memory about halved; 13% faster on the 25k demo log's snapshots,
        mostly at the budget, 23% slower on lengths spread evenly over 64-256 tokens)."""
        longest = max(len(x) for x in ids)
        width = max(longest, min(-(-longest // PAD_MULTIPLE) * PAD_MULTIPLE, self.config.max_tokens))
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        return input_ids.to(device), mask.to(device)

    def _backward(self, rows: list[list[int]], targets: np.ndarray, numeric: np.ndarray | None,
                  loss_fn: nn.Module, device: torch.device, use_bf16: bool = False) -> float:
        """Accumulate one batch's gradients and return its mean loss. On CPU the batch runs in
        micro-batches of ``micro_batch_size``, each part's mean loss weighted by its share, so
        the gradient is the whole batch's while only a part's activations are held at once."""
        micro = self.config.micro_batch_size
        if device.type != "cpu" or not micro:
            micro = len(rows)
        total = 0.0
        for part in range(0, len(rows), micro):
            ids, mask = self._collate(rows[part:part + micro], device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                num = (torch.as_tensor(numeric[part:part + micro], device=device)
                       if numeric is not None else None)
                logits = self.model(ids, mask, num)
            target = torch.as_tensor(targets[part:part + micro], device=device)
            loss = loss_fn(logits, target) * (len(ids) / len(rows))
            loss.backward()
            total += float(loss.item())
        return total

    def trainable_state(self) -> dict[str, torch.Tensor]:
        assert self.model is not None
        return {k: v.detach().clone() for k, v in self.model.named_parameters() if v.requires_grad}

    # ---- training -----------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], y: np.ndarray, val_texts: Sequence[str],
            y_val: np.ndarray, checkpoint_dir: Path | None = None,
            progress: Progress | None = None, numeric: np.ndarray | None = None,
            val_numeric: np.ndarray | None = None) -> EncoderChurnModel:
        cfg = self.config
        if cfg.n_numeric:
            self.scaler = NumericScaler().fit(np.asarray(numeric, dtype=np.float64))
        train_num = self._numeric(numeric, len(texts))
        val_num_all = self._numeric(val_numeric, len(val_texts))
        self._build()
        self._merged = None
        assert self.model is not None
        device = pick_device(cfg.device)
        self.model.to(device)
        train_ids = self._encode(texts)
        lengths = np.array([len(x) for x in train_ids])
        y = np.asarray(y, dtype=np.float32)
        rng_val = np.random.default_rng(cfg.seed)
        val_pick = np.sort(rng_val.permutation(len(val_texts))[:cfg.eval_examples])
        val_ids = self._encode([val_texts[i] for i in val_pick])
        val_num = val_num_all[val_pick] if val_num_all is not None else None
        y_eval = np.asarray(y_val)[val_pick]

        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            total = min(total, cfg.max_steps)
        warmup = max(1, total // 20)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(
            (s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
        pos = float(y.sum())
        pos_weight = torch.tensor((len(y) - pos) / max(pos, 1.0), device=device)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)

        state = {"step": 0, "best": -1.0, "best_state": None, "bad": 0, "history": []}
        ckpt = checkpoint_dir / "last.pt" if checkpoint_dir else None
        if ckpt and ckpt.exists():
            saved = torch.load(ckpt, map_location="cpu", weights_only=False)
            if saved["config"] == cfg.to_dict() and saved["n_train"] == len(train_ids):
                self.model.load_state_dict(saved["trainable"], strict=False)
                optimizer.load_state_dict(saved["optimizer"])
                schedule.load_state_dict(saved["schedule"])
                state = saved["state"]
        use_bf16 = device.type == "cuda"
        step = state["step"]
        stop = False
        for epoch in range(cfg.epochs):
            batches = bucketed_batches(lengths, cfg.batch_size, np.random.default_rng(cfg.seed + epoch))
            for b, idx in enumerate(batches):
                global_step = epoch * steps_per_epoch + b
                if global_step < step:
                    continue  # resumed: these batches were trained before the checkpoint
                if step >= total or stop:
                    break
                self.model.train()
                torch.manual_seed(cfg.seed * 1_000_003 + step)
                loss_sum = self._backward([train_ids[i] for i in idx], y[idx],
                                          train_num[idx] if train_num is not None else None,
                                          loss_fn, device, use_bf16)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if progress:
                    progress(step, total, f"loss {loss_sum:.3f}")
                if step % cfg.eval_every == 0 or step == total:
                    score = float(average_precision_score(
                        y_eval, self._logits(val_ids, device, numeric=val_num)))
                    state["history"].append({"step": step, "val_pr_auc": score,
                                             "loss": loss_sum})
                    if score > state["best"]:
                        state.update(best=score, best_state=self.trainable_state(), bad=0)
                    else:
                        state["bad"] += 1
                        stop = state["bad"] >= cfg.patience
                    state["step"] = step
                    if ckpt:
                        ckpt.parent.mkdir(parents=True, exist_ok=True)
                        tmp = ckpt.with_suffix(".tmp")
                        torch.save({"config": cfg.to_dict(), "n_train": len(train_ids),
                                    "trainable": self.trainable_state(),
                                    "optimizer": optimizer.state_dict(),
                                    "schedule": schedule.state_dict(), "state": state}, tmp)
                        tmp.replace(ckpt)
            if step >= total or stop:
                break
        if state["best_state"] is not None:
            self.model.load_state_dict(state["best_state"], strict=False)
        self.history = state["history"]
        release_freed_heap()
        return self

    # ---- inference ----------------------------------------------------------------------------
    @torch.inference_mode()
    def _logits(self, ids: list[list[int]], device: torch.device, batch_size: int = 64,
                numeric: np.ndarray | None = None, model: ChurnClassifier | None = None,
                progress: Progress | None = None) -> np.ndarray:
        """``model`` defaults to the trainable network (training's own validation);
        ``progress(done, total, "scoring")`` after each batch (a backtest scores tens of
        thousands of rows: 15 silent minutes at 25,000 customers on 2 cores)."""
        net = model if model is not None else self.model
        assert net is not None
        net.eval()
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty(len(ids), dtype=np.float64)
        use_bf16 = device.type == "cuda"
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            input_ids, mask = self._collate([ids[i] for i in idx], device)
            num = torch.as_tensor(numeric[idx], device=device) if numeric is not None else None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                out[idx] = net(input_ids, mask, num).float().cpu().numpy()
            if progress:
                progress(min(start + batch_size, len(order)), len(order), "scoring")
        if len(order) >= TRIM_AFTER_ROWS:
            release_freed_heap()
        return out

    def scoring_model(self) -> ChurnClassifier:
        """The network that scores after training: a copy with the adapters folded into the
        base weights. The served model is loaded merged (``load``), so scoring the validation,
        stacking and test rows with the merged copy scores the function that is served, and a
        LoRA layer then costs one matmul instead of three. The trainable original stays for
        ``save`` and checkpoints. A model loaded merged is its own scoring model."""
        assert self.model is not None, "fit or load first"
        if not hasattr(self.model.backbone, "merge_and_unload"):
            return self.model
        if self._merged is None:
            merged = copy.deepcopy(self.model)
            merged.backbone = merged.backbone.merge_and_unload()
            self._merged = merged.eval()
        return self._merged

    def predict_logits(self, texts: Sequence[str], batch_size: int | None = None,
                       numeric: np.ndarray | None = None,
                       progress: Progress | None = None) -> np.ndarray:
        device = next(self.model.parameters()).device  # type: ignore[union-attr]
        return self._logits(self._encode(texts), device, batch_size or self.score_batch_size,
                            numeric=self._numeric(numeric, len(texts)),
                            model=self.scoring_model(), progress=progress)

    # ---- persistence --------------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        assert self.model is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.model.backbone.save_pretrained(directory / "adapter")
        from safetensors.torch import save_file

        head = {k: v.detach().cpu().contiguous() for k, v in self.model.head.state_dict().items()}
        save_file(head, directory / "head.safetensors")
        scaler = asdict(self.scaler) if self.scaler else None
        (directory / "encoder_config.json").write_text(json.dumps(
            {"lora": self.config.to_dict(), "history": self.history, "scaler": scaler}, indent=2))

    @classmethod
    def load(cls, directory: Path, device: str = "auto", merge: bool = True,
             precision: str = "fp32") -> EncoderChurnModel:
        """``merge`` folds the adapters into the base weights: the same function (to float
        rounding), about 1.5x as fast to score, but no longer trainable. ``precision="int8"``
        quantizes the linear layers for CPU batch scoring (see ``quantize_int8``)."""
        from peft import PeftModel
        from safetensors.torch import load_file

        meta = json.loads((directory / "encoder_config.json").read_text())
        cfg = LoraConfig.from_dict(meta["lora"])
        obj = cls(config=cfg, history=meta.get("history", []))
        if meta.get("scaler"):
            obj.scaler = NumericScaler(**meta["scaler"])
        obj.tokenizer = load_tokenizer(cfg.encoder)
        backbone = PeftModel.from_pretrained(load_backbone(cfg.encoder), directory / "adapter")
        if merge:
            backbone = backbone.merge_and_unload()
        obj.model = ChurnClassifier(backbone, backbone.config.hidden_size, n_numeric=cfg.n_numeric)
        obj.model.head.load_state_dict(load_file(directory / "head.safetensors"))
        obj.model.to(pick_device(device if device != "auto" else cfg.device)).eval()
        if precision == "int8":
            obj.quantize_int8()
        elif precision != "fp32":
            raise ValueError(f"precision must be fp32 or int8, got {precision!r}")
        return obj

    def quantize_int8(self) -> EncoderChurnModel:
        """Dynamic int8 linear layers (CPU only): the weights are quantized once, activations per
        batch, so a probability moves by ~1e-3 with the batch it is scored in. Worth it for bulk
        scoring; the API's single-customer path keeps fp32 so repeated calls agree exactly."""
        assert self.model is not None
        if next(self.model.parameters()).device.type != "cpu":
            raise ValueError("int8 scoring is for CPUs; on a GPU the scorer uses bf16")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch marks the quantized tensor API as deprecated
            from torch.ao.quantization import quantize_dynamic

            self.model.backbone = quantize_dynamic(self.model.backbone, {nn.Linear},
                                                   dtype=torch.qint8)
        return self
