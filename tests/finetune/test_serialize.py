"""Serialization: deterministic, within budget, newest events kept, segments addressable, no future."""

from __future__ import annotations

import pandas as pd
import pytest

from finetune.encoders import load_tokenizer
from finetune.features import compute_features
from finetune.labels import ChurnDefinition, eligible_customers
from finetune.serialize import SEPARATOR, Serializer
from tests.conftest import make_events


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm")


@pytest.fixture(scope="module")
def snaps(synthetic):
    events, _ = synthetic
    cutoff = pd.Timestamp("2025-03-01", tz="UTC")
    definition = ChurnDefinition()
    ids = eligible_customers(events, cutoff, definition)[:80]
    feats = compute_features(events, cutoff, ids, definition).reset_index()
    feats.insert(1, "cutoff", cutoff)
    return events, feats


@pytest.mark.parametrize("budget", [64, 128, 256])
def test_respects_the_token_budget(tokenizer, snaps, budget):
    events, feats = snaps
    for s in Serializer(tokenizer, budget).serialize_snapshots(events, feats):
        assert len(tokenizer(s.text)["input_ids"]) <= budget


def test_deterministic_and_versioned(tokenizer, snaps):
    events, feats = snaps
    a = [s.text for s in Serializer(tokenizer, 128).serialize_snapshots(events, feats)]
    b = [s.text for s in Serializer(tokenizer, 128).serialize_snapshots(events.sample(frac=1, random_state=1), feats)]
    assert a == b
    assert Serializer(tokenizer).serialize_snapshots(events, feats.head(1))[0].version == "3"
    assert Serializer(tokenizer, version="2").serialize_snapshots(events, feats.head(1))[0].version == "2"
    with pytest.raises(ValueError, match="serialization version '9'"):
        Serializer(tokenizer, version="9")


def test_drops_oldest_events_first_and_keeps_header(tokenizer, snaps):
    events, feats = snaps
    long = Serializer(tokenizer, 512).serialize_snapshots(events, feats)
    short = Serializer(tokenizer, 128).serialize_snapshots(events, feats)
    for lo, sh in zip(long, short):
        facts_lo = [s for s in lo.segments if s.kind == "fact"]
        assert [s for s in sh.segments if s.kind == "fact"] == facts_lo  # 128 tokens hold the header
        ev_lo = [s.sid for s in lo.segments if s.kind != "fact"]
        ev_sh = [s.sid for s in sh.segments if s.kind != "fact"]
        assert ev_sh == ev_lo[:len(ev_sh)]  # a prefix of newest-first = the oldest were dropped
        days = [s.days_ago for s in lo.segments if s.kind != "fact"]
        assert days == sorted(days)
    assert any(s.n_dropped > 0 for s in short)


def test_segments_are_addressable_and_removable(tokenizer, snaps):
    events, feats = snaps
    s = Serializer(tokenizer, 256).serialize_snapshots(events, feats.head(5))[0]
    assert s.text == SEPARATOR.join(seg.text for seg in s.segments)
    assert len({seg.sid for seg in s.segments}) == len(s.segments)
    first = s.segments[0].sid
    assert s.segments[0].text not in s.without([first]).split(SEPARATOR)


def test_chinese_and_english_text_and_no_text_ablation(tokenizer):
    events = make_events([("c", "2024-01-01", "order", 20.0), ("c", "2024-01-20", "order", 30.0)])
    extra = pd.DataFrame([
        {"customer_id": "c", "ts": pd.Timestamp("2024-02-01", tz="UTC"), "event": "review",
         "rating": 1.0, "text": "质量很差，以后不会再来了。"},
        {"customer_id": "c", "ts": pd.Timestamp("2024-02-02", tz="UTC"), "event": "ticket",
         "text": "Parcel arrived broken."},
        {"customer_id": "c", "ts": pd.Timestamp("2024-03-05", tz="UTC"), "event": "ticket",
         "text": "after the cutoff"}])
    from finetune.contract import validate_events

    events, _ = validate_events(pd.concat([events, extra], ignore_index=True))
    cutoff = pd.Timestamp("2024-03-01", tz="UTC")
    feats = compute_features(events, cutoff, ["c"], ChurnDefinition()).reset_index()
    feats.insert(1, "cutoff", cutoff)
    text = Serializer(tokenizer, 256).serialize_snapshots(events, feats)[0].text
    assert "质量很差" in text and "Parcel arrived broken." in text and "review 1/5" in text
    assert "after the cutoff" not in text
    assert "overdue" in text or "on schedule" in text  # recency against the usual gap
    blank = Serializer(tokenizer, 256, include_text=False).serialize_snapshots(events, feats)[0].text
    assert "质量很差" not in blank and "review 1/5" in blank and "support ticket" in blank


def _reviewer(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A customer with ``n`` long reviews, one every ten days, the newest a complaint."""
    from finetune.contract import validate_events

    words = ("The strings sound bright and stay in tune for weeks, the packaging was fine and "
             "delivery was on time, I would buy them again for my students. ")
    rows = [{"customer_id": "r", "ts": pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=10 * i),
             "event": "review", "rating": 5.0, "item": f"item {i}", "text": words * 2}
            for i in range(n - 1)]
    rows.append({"customer_id": "r", "ts": pd.Timestamp("2024-01-01", tz="UTC")
                 + pd.Timedelta(days=10 * (n - 1)), "event": "review", "rating": 1.0,
                 "item": "tuner", "text": "Broke after two days and support never answered me."})
    events, _ = validate_events(pd.DataFrame(rows))
    cutoff = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=10 * n)
    feats = compute_features(events, cutoff, ["r"], ChurnDefinition()).reset_index()
    feats.insert(1, "cutoff", cutoff)
    return events, feats


@pytest.mark.parametrize("n", [3, 8, 40])
def test_words_do_not_displace_the_history(tokenizer, n):
    """v3: the text arm keeps the newest events of the no-text arm (minus at most the quote
    reserve's worth) and the newest complaint's words; v2 let long quotes push events out."""
    events, feats = _reviewer(n)
    bare = Serializer(tokenizer, 256, include_text=False).serialize_snapshots(events, feats)[0]
    v3 = Serializer(tokenizer, 256).serialize_snapshots(events, feats)[0]
    v2 = Serializer(tokenizer, 256, version="2").serialize_snapshots(events, feats)[0]
    ids = {name: [s.sid for s in ser.segments if s.kind != "fact"]
           for name, ser in (("bare", bare), ("v3", v3), ("v2", v2))}
    assert ids["v3"] == ids["bare"][:len(ids["v3"])]  # the newest events, in order
    assert "support never answered" in v3.text
    assert all(seg.text.count('"') % 2 == 0 for seg in v3.segments)  # a cut quote is closed
    assert len(tokenizer(v3.text)["input_ids"]) <= 256
    sep = Serializer(tokenizer).sep_tokens
    lost = [s.n_tokens + sep for s in bare.segments if s.sid in set(ids["bare"]) - set(ids["v3"])]
    assert sum(lost) < 256 // 4 + max(lost, default=0)  # at most the reserve (one event's grain)
    assert len(ids["v3"]) >= len(ids["v2"])
    if n == 8:
        assert len(ids["v3"]) > len(ids["v2"])  # v2 quoted everything and kept fewer events
        assert len(ids["v3"]) == len(ids["bare"])  # v3: every event, the newest ones quoted
        quoted = [s for s in v3.segments if s.kind == "review" and '"' in s.text]
        assert 1 <= len(quoted) < n


def test_without_words_v3_is_v2(tokenizer, snaps):
    """No quotes to place: both versions are the same bare newest-first fill."""
    events, feats = snaps
    blank = events.assign(text=None)
    for budget in (64, 256):
        a = Serializer(tokenizer, budget).serialize_snapshots(blank, feats.head(30))
        b = Serializer(tokenizer, budget, version="2").serialize_snapshots(blank, feats.head(30))
        assert [s.text for s in a] == [s.text for s in b]


@pytest.mark.parametrize("cache_size", [0, 7, 100])
def test_a_full_token_cache_changes_nothing(tokenizer, snaps, monkeypatch, cache_size):
    """The memo of token counts is cleared when full, in the middle of a run: same texts."""
    from finetune import serialize

    events, feats = snaps
    fresh = [(s.text, [g.n_tokens for g in s.segments])
             for s in Serializer(tokenizer, 128).serialize_snapshots(events, feats)]
    monkeypatch.setattr(serialize, "FIT_CACHE_SIZE", cache_size)
    small = Serializer(tokenizer, 128)
    for _ in range(2):  # the second pass starts from whatever the first one left cached
        assert [(s.text, [g.n_tokens for g in s.segments])
                for s in small.serialize_snapshots(events, feats)] == fresh
    assert len(small._fitted) <= max(cache_size, 200)  # one call's sentences at most
