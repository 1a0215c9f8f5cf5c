"""The Chroma store: the customer's own documents first (and only), nothing after the as-of date,
incremental upserts by event id, a rebuild from events, and no downloading embedding function."""

from __future__ import annotations

import pandas as pd
import pytest

from assistant.embeddings import NAME
from assistant.playbook import Playbook
from assistant.retrieval import ContextStore
from finetune.contract import validate_events

pytestmark = pytest.mark.slow  # builds the multilingual encoder once (about a minute)

ROWS = [
    ("A", "2024-01-05", "order", 40.0, "rain jacket", None, None),
    ("A", "2024-02-01", "review", None, "rain jacket", 1, "The zipper broke after two days."),
    ("A", "2024-02-03", "ticket", None, None, None, "Where is my refund? Email me at a@b.com"),
    ("A", "2024-03-01", "note", None, None, None, "Agent: offered a replacement, declined."),
    ("A", "2024-06-01", "review", None, "boots", 2, "Soles came off, zipper stuck."),
    ("B", "2024-01-07", "review", None, "rain jacket", 1, "My zipper broke immediately too."),
    ("B", "2024-01-09", "ticket", None, None, None, "Zipper broken, want a refund."),
    ("C", "2024-01-10", "review", None, "茶壶", 1, "茶壶的盖子坏了，质量太差。"),
    ("C", "2024-01-12", "review", None, "杯子", 5, "杯子很好看，很满意。"),
]


@pytest.fixture()
def events() -> pd.DataFrame:
    frame = pd.DataFrame(ROWS, columns=["customer_id", "ts", "event", "amount", "item", "rating",
                                        "text"])
    return validate_events(frame, "test")[0]


@pytest.fixture()
def store(tmp_path, events) -> ContextStore:
    s = ContextStore(tmp_path / "chroma")
    s.index_events(events)
    s.index_playbook(Playbook.load())
    return s


def test_own_documents_first_and_only(store):
    hits = store.search("A", "zipper broke", k=10)
    assert hits and all(h.customer_id == "A" for h in hits)
    assert "zipper broke" in hits[0].text.lower()
    assert {h.kind for h in hits} == {"order", "review", "ticket", "note"}


def test_nothing_after_the_cutoff(store):
    hits = store.search("A", "zipper", k=10, before=pd.Timestamp("2024-03-01", tz="UTC"))
    assert hits and all(h.day < "2024-03-01" for h in hits)


def test_chinese_query_finds_chinese_complaint(store):
    hits = store.search("C", "商品坏了 质量问题", k=2)
    assert "盖子坏了" in hits[0].text


def test_documents_are_masked(store):
    ticket = next(h for h in store.search("A", "refund", k=10) if h.kind == "ticket")
    assert "a@b.com" not in ticket.text and "[email]" in ticket.text


def test_incremental_upsert_and_rebuild(tmp_path, store, events):
    again = store.index_events(events)
    assert again["embedded"] == 0 and again["unchanged"] == len(events)
    changed = events.copy()
    changed.loc[changed["text"] == "Zipper broken, want a refund.", "text"] = "Fixed, thanks."
    assert store.index_events(changed)["embedded"] == 1
    reopened = ContextStore(store.path)  # persistent: a new process sees the same store
    assert reopened.count() == len(events)
    counts = reopened.rebuild(events, Playbook.load())
    assert counts["embedded"] == len(events) and reopened.count() == len(events)


def test_playbook_search_and_own_embedding_function(store):
    assert store.search_playbook("the item arrived broken and they returned it")[0] in (
        "apology_replacement", "shipping_upgrade", "support_callback")
    assert store.search_playbook("好久没有下单了", lang="zh")
    assert store.context.configuration_json["embedding_function"]["name"] == NAME
