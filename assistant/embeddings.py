"""The project's own embedding function for Chroma: multilingual-e5-small, rebuilt locally.

Chroma's default embedding function downloads a model at run time, which fails offline, so every
collection is opened with this one. E5 is multilingual (reviews may be English or Chinese) and
distinguishes queries from passages by a prefix, which ``embed_query`` applies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

NAME = "retention-e5-small"


class E5Embedding(EmbeddingFunction[Documents]):
    def __init__(self, model_dir: str | None = None, batch_size: int = 32,
                 max_length: int = 256) -> None:
        self.model_dir = model_dir
        self.batch_size = batch_size
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        from finetune.encoders import quiet
        from finetune.multilingual import multilingual_model_path

        quiet()
        path = Path(self.model_dir) if self.model_dir else multilingual_model_path()
        self._tokenizer = AutoTokenizer.from_pretrained(path)
        self._model = AutoModel.from_pretrained(path).eval()

    def _embed(self, texts: list[str], prefix: str) -> Embeddings:
        import torch

        self._load()
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            chunk = [prefix + texts[i] for i in idx]
            enc = self._tokenizer(chunk, padding=True, truncation=True,
                                  max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1)
            vectors = torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)
            for i, v in zip(idx, vectors):
                out[i] = v
        return out

    def __call__(self, input: Documents) -> Embeddings:
        return self._embed(list(input), "passage: ")

    def embed_query(self, input: Documents) -> Embeddings:
        return self._embed(list(input), "query: ")

    @staticmethod
    def name() -> str:
        return NAME

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def get_config(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "max_length": self.max_length}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> E5Embedding:
        return E5Embedding(model_dir=config.get("model_dir"),
                           max_length=config.get("max_length", 256))
