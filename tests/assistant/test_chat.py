"""Chat answers are checked when complete: an invented number or a foreign citation is retracted."""

from __future__ import annotations

from assistant.chat import check_answer
from assistant.schema import Evidence

EV = {e.id: e for e in [
    Evidence(id="event:a1", customer_id="C1", kind="review", text="3 days ago: review 1/5 \"late\""),
    Evidence(id="event:b2", customer_id="C2", kind="review", text="review 5/5"),
]}


def test_grounded_answer_passes():
    assert check_answer("They rated it 1/5 three days ago [event:a1].", EV, "C1") == []


def test_invented_numbers_foreign_citations_and_links_fail():
    assert check_answer("They spent 400 on it [event:a1].", EV, "C1")
    assert check_answer("See [event:b2].", EV, "C1")
    assert check_answer("Write to them at x@y.com", EV, "C1")
