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


def test_risk_claims_and_offers_in_answers_are_checked():
    from assistant.checks import playbook_numbers
    from assistant.playbook import Playbook

    offers = playbook_numbers(Playbook.load(), "en")
    assert check_answer("This is a low risk customer [event:a1].", EV, "C1", band="high")
    assert check_answer("Offer them a 90% discount on every order.", EV, "C1", offers=offers)
    assert check_answer("A 10% coupon could help [event:a1].", EV, "C1", band="high",
                        offers=offers) == []
