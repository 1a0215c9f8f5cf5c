"""Deterministic wording: a reason built from a cut quote still ends a sentence the checks accept."""

from __future__ import annotations

import pandas as pd
import pytest

from assistant.attributions import Attribution
from assistant.checks import SENTENCE_END
from assistant.scoring import ScoredCustomer
from assistant.wording import reason_text
from finetune.serialize import Serialized

CUT = [  # v3 closes a cut quote; v2 left it open
    'review 1/5 of tuner "Broke after two days and support …"',
    'review 1/5 of tuner "Broke after two days and support …',
    'support ticket "Where is my parcel?"',
]


@pytest.mark.parametrize("text", CUT)
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_reasons_from_quotes_end_their_sentence(text, lang):
    cutoff = pd.Timestamp("2024-03-01", tz="UTC")
    scored = ScoredCustomer("c", cutoff, 0.7, "high", pd.Series(dtype=float),
                            Serialized("c", cutoff), pd.DataFrame())
    kind = "ticket" if text.startswith("support") else "review"
    out = reason_text(Attribution("event:e1", kind, f"3 days ago: {text}", 3, 0.1), scored, lang)
    assert SENTENCE_END.search(out), out
    assert ("Broke after two days" in out) or ("Where is my parcel?" in out)
    assert out.count('"') + out.count("“") + out.count("”") in (0, 2, 4)  # no dangling quote
