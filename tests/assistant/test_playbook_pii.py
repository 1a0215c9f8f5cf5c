"""The playbook is a validated data file; masking hides contacts and keeps prices and dates."""

from __future__ import annotations

import pytest

from assistant.playbook import Playbook, PlaybookError
from finetune.pii import mask


def test_default_playbook_covers_common_actions_in_two_languages():
    book = Playbook.load()
    for action_id in ("apology_replacement", "personal_coupon", "loyalty_points",
                      "shipping_upgrade", "account_manager_call", "winback_email"):
        assert action_id in book
        assert book[action_id].what["en"] and book[action_id].what["zh"]


def test_conditions_decide_eligibility():
    book = Playbook.load()
    rich = {"monetary": 5000.0, "probability": 0.7, "frequency": 9.0, "recency_days": 40.0}
    poor = {"monetary": 20.0, "probability": 0.7, "frequency": 1.0, "recency_days": 40.0}
    assert "account_manager_call" in [a.id for a in book.eligible(rich)]
    assert "account_manager_call" not in [a.id for a in book.eligible(poor)]
    assert "loyalty_points" not in [a.id for a in book.eligible(poor)]
    # A fact we do not know never makes an action fit.
    assert not book["apology_replacement"].fits({"returns_90d": float("nan")})


@pytest.mark.parametrize("body, expected", [
    ("- id: Bad Id\n  what: {en: hi}\n  channel: email\n  cost: low\n",
     "action Bad Id: field 'id'"),
    ("- id: coupon\n  what: {zh: 你好}\n  channel: email\n  cost: low\n",
     "needs at least an English"),
    ("- id: coupon\n  what: {en: hi}\n  channel: pigeon\n  cost: low\n",
     "action coupon: field 'channel'"),
    (("- id: coupon\n  what: {en: hi}\n  channel: email\n  cost: low\n"
     "  when: {all: [{fact: shoe_size, op: '>', value: 3}]}\n"), "unknown fact 'shoe_size'"),
    (("- id: coupon\n  what: {en: hi}\n  channel: email\n  cost: low\n"
     "- id: coupon\n  what: {en: hi}\n  channel: email\n  cost: low\n"), "used twice: coupon"),
    ("just: a mapping\n", "non-empty list"),
])
def test_bad_playbook_files_say_what_is_wrong(tmp_path, body, expected):
    path = tmp_path / "book.yaml"
    path.write_text(body)
    with pytest.raises(PlaybookError, match=expected):
        Playbook.load(path)


@pytest.mark.parametrize("text, masked", [
    ("write to jane.doe+shop@example.co.uk please", "write to [email] please"),
    ("call +44 20 7946 0958 today", "call [phone] today"),
    ("我的手机是13812345678，请回电", "我的手机是[phone]，请回电"),
    ("(555) 123-4567", "[phone]"),
    ("paid 1,234.50 on 2011-09-11 for 12 items, order 536365", None),
])
def test_mask(text, masked):
    assert mask(text) == (masked if masked is not None else text)
