"""The checks catch invented numbers, foreign or unknown evidence, off-playbook actions, and
actions whose conditions do not hold; a failing draft gets one retry, then gives up."""

from __future__ import annotations

import json

import pytest

from assistant.checks import check_draft, numbers
from assistant.generate import generate, messages
from assistant.playbook import Playbook
from assistant.schema import Draft, Evidence
from tests.assistant.fakes import ScriptedChat

CID = "C1"
EVIDENCE = {e.id: e for e in [
    Evidence(id="score:risk", customer_id=CID, kind="score", text="churn probability 81% (high)"),
    Evidence(id="fact:recency", customer_id=CID, kind="fact",
             text="last order 120 days ago (one to three months), usually every 30 days: overdue"),
    Evidence(id="event:e1", customer_id=CID, kind="return",
             text="12 days ago: return 1,234.50 of oak table"),
    Evidence(id="event:x9", customer_id="C2", kind="review", text="2 days ago: review 1/5"),
]}
FACTS = {"probability": 0.81, "recency_days": 120.0, "returns_90d": 1.0, "frequency": 4.0,
         "monetary": 500.0, "tickets_90d": 0.0, "rating_last": float("nan"), "n_cancels": 0.0}
PLAYBOOK = Playbook.load()


def draft(reasons, actions=()) -> Draft:
    return Draft.model_validate({
        "reasons": [{"text": t, "evidence": ev} for t, ev in reasons],
        "actions": [{"id": i, "why": w} for i, w in actions]})


def problems(d: Draft, lang: str = "en") -> list[str]:
    return check_draft(d, EVIDENCE, CID, PLAYBOOK, FACTS, lang)


def test_a_grounded_draft_passes():
    d = draft([("No order for 120 days although they usually buy every 30 days.",
                ["fact:recency"]),
               ("They returned an oak table worth 1234.5 twelve days ago.", ["event:e1"])],
              [("apology_replacement", "It answers the recent return.")])
    assert problems(d) == []


def test_numbers_are_compared_as_values():
    assert numbers("paid 1,234.50 and 3 items, 81%") == {1234.5, 3.0, 81.0}


@pytest.mark.parametrize("text", ["No order for 150 days.", "Risk is 95%.",
                                  "They returned 2 tables."])
def test_invented_numbers_are_caught(text):
    found = problems(draft([(text, ["fact:recency", "score:risk"])]))
    assert any("not in its cited evidence" in p for p in found), found


def test_a_number_from_uncited_evidence_is_caught():
    found = problems(draft([("Returned goods worth 1,234.50.", ["fact:recency"])]))
    assert any("1234.5" in p for p in found), found


def test_foreign_and_unknown_evidence_ids_are_caught():
    found = problems(draft([("A bad review.", ["event:x9"]), ("Overdue.", ["event:nope"])]))
    assert any("another customer" in p for p in found)
    assert any("does not exist" in p for p in found)


def test_off_playbook_and_inapplicable_actions_are_caught():
    found = problems(draft([("Overdue.", ["fact:recency"])],
                           [("refund_everything", "Because."), ("support_callback", "Call them.")]))
    assert any("'refund_everything' is not in the playbook" in p for p in found)
    # support_callback needs a recent ticket or a cancellation; this customer has neither.
    assert any("'support_callback' does not apply" in p for p in found)
    found = problems(draft([("Overdue.", ["fact:recency"])], [("loyalty_points", "Thank them.")]))
    assert not any("loyalty_points" in p for p in found)  # 4 orders >= 3: it applies


def test_links_contacts_and_language_are_caught():
    found = problems(draft([("Overdue, see https://evil.example.com now.", ["fact:recency"]),
                            ("Call them on +44 20 7946 0958.", ["fact:recency"])]))
    assert any("link" in p for p in found) and any("contact" in p for p in found)
    assert any("not written in Chinese" in p
               for p in problems(draft([("Overdue.", ["fact:recency"])]), lang="zh"))
    assert problems(draft([("客户已经 120 天没有下单了。", ["fact:recency"])]), lang="zh") == []


def _reply(reasons, actions=()) -> str:
    return json.dumps({"reasons": [{"text": t, "evidence": e} for t, e in reasons],
                       "actions": [{"id": i, "why": w} for i, w in actions]})


def _run(chat: ScriptedChat):
    prompt = messages(CID, 0.81, "high", "2011-09-11", list(EVIDENCE.values())[:3],
                      PLAYBOOK.eligible(FACTS), "en")
    return generate(chat, prompt, EVIDENCE, CID, PLAYBOOK, FACTS, "en",
                    {a.id for a in PLAYBOOK.eligible(FACTS)})


def test_one_retry_with_the_problems_then_success():
    bad = _reply([("No order for 999 days.", ["fact:recency"])])
    good = _reply([("No order for 120 days.", ["fact:recency"])],
                  [("winback_email", "They have been away a while.")])
    chat = ScriptedChat([bad, good])
    gen = _run(chat)
    assert gen.draft is not None and gen.attempts == 2
    retry_prompt = chat.calls[1][-1].content
    assert "999" in retry_prompt and "not in its cited evidence" in retry_prompt


def test_two_failures_give_up_and_garbage_is_a_failure():
    gen = _run(ScriptedChat(["not json at all", _reply([("Risk 99%.", ["score:risk"])])]))
    assert gen.draft is None and gen.attempts == 2 and gen.problems


def test_last_attempt_keeps_only_the_items_that_pass():
    mixed = _reply([("No order for 120 days.", ["fact:recency"]),
                    ("They spent 5,000 last year.", ["fact:recency"])],
                   [("winback_email", "They have been away a while."),
                    ("refund_everything", "Because.")])
    gen = _run(ScriptedChat([mixed, mixed]))
    assert gen.draft is not None and gen.attempts == 2
    assert [r.text for r in gen.draft.reasons] == ["No order for 120 days."]
    assert [a.id for a in gen.draft.actions] == ["winback_email"]
    assert any("5000" in p or "5,000" in p for p in gen.dropped)
    assert any("refund_everything" in p for p in gen.dropped)
    assert problems(gen.draft) == []


def test_a_cut_off_sentence_is_trimmed_or_caught():
    from assistant.generate import trim_to_sentence

    assert trim_to_sentence("Overdue by 90 days. They also returned a table and") == \
        "Overdue by 90 days."
    assert trim_to_sentence("Overdue and") == "Overdue and"  # nothing left to keep: caught
    found = problems(draft([("Overdue and", ["fact:recency"])],
                           [("loyalty_points", "They have bought often and")]))
    assert any("reason 1 stops mid-sentence" in p for p in found)
    assert any("action 1 stops mid-sentence" in p for p in found)
    assert not any("mid-sentence" in p for p in problems(draft([("逾期未购买。", ["fact:recency"])]),
                                                             "zh"))


def test_citations_are_completed_only_from_the_customers_own_evidence():
    from assistant.generate import complete_citations

    d = complete_citations(draft([("Returned 1,234.50 and silent for 120 days.", ["score:risk"])]),
                           EVIDENCE, CID)
    assert set(d.reasons[0].evidence) == {"score:risk", "event:e1", "fact:recency"}
    assert problems(d) == []
    d = complete_citations(draft([("Rated 1/5 two days ago.", ["score:risk"])]), EVIDENCE, CID)
    assert "event:x9" not in d.reasons[0].evidence  # another customer's review is never added
    assert any("not in its cited evidence" in p for p in problems(d))
