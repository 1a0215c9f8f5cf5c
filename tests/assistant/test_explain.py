"""End to end on a real (small) trained model: explanations are grounded and checked, in English
and Chinese; attributions are faithful; instructions inside customer text change nothing."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from assistant.attributions import (
    attribute,
    attribute_many,
    faithfulness,
    feature_logodds,
    occlusion_many,
    tree_contributions,
)
from assistant.checks import URL, check_explanation
from assistant.explain import Assistant
from assistant.playbook import Playbook
from assistant.schema import Explanation
from assistant.scoring import CustomerNotFound, Scorer, default_cutoff
from finetune.artifacts import TrainedModel
from finetune.contract import validate_events
from tests.assistant.fakes import ScriptedChat
from tests.assistant.injections import INJECTIONS

pytestmark = pytest.mark.slow
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def scorer(trained_model) -> Scorer:
    return Scorer(TrainedModel.load(trained_model))


@pytest.fixture(scope="module")
def events(synthetic) -> pd.DataFrame:
    return synthetic[0]


@pytest.fixture(scope="module")
def risky(scorer, events) -> list[str]:
    scores = scorer.score(events)
    return scores.sort_values("probability", ascending=False)["customer_id"].tolist()


def passes_checks(x: Explanation, playbook: Playbook, facts: dict) -> list[str]:
    return check_explanation(x, playbook, facts)


def test_deterministic_explanations_pass_their_own_checks(scorer, events, risky):
    helper = Assistant(scorer, Playbook.load())
    for cid in risky[:5] + risky[-3:]:
        for lang in ("en", "zh"):
            x = helper.explain(events, cid, lang=lang)
            facts = scorer.customer(events, cid).facts
            assert passes_checks(x, helper.playbook, facts) == [], (cid, lang, x)
            assert x.backend == "none" and not x.fallback
            assert all(e.customer_id == cid for e in x.evidence)
            if lang == "zh":
                assert all(CJK.search(r.text) for r in x.reasons)
            # The risk shown is the model's score for that customer.
            batch = scorer.score(events, customers=[cid])
            assert x.risk.probability == pytest.approx(float(batch["probability"].iloc[0]),
                                                       abs=1e-9)


def test_chinese_customers_get_chinese_and_english_explanations(scorer, events):
    zh_customers = events.loc[events["text"].fillna("").str.contains(CJK.pattern),
                              "customer_id"].unique()
    assert len(zh_customers) > 0
    helper = Assistant(scorer, Playbook.load())
    for lang in ("zh", "en"):
        x = helper.explain(events, str(zh_customers[0]), lang=lang)
        assert x.language == lang and x.reasons and x.actions


def _reference(scorer, events) -> pd.Series:
    """Aggregates a removed fact is reset to: the medians over every scored customer."""
    frame, _ = scorer.model.snapshot(events, default_cutoff(events))
    return frame[list(scorer.model.config["features"])].median()


def test_deletion_test_machinery(scorer, events, risky):
    """The deletion test itself (the k=3 figure on real data is bench/explain_quality.py's):
    removing the single top segment, with its aggregates reset to a reference, lowers the risk
    more than a random one, and the joint removal goes through the same variant path."""
    rng = np.random.default_rng(0)
    sample = rng.choice(np.array(risky[:200], dtype=object), size=20, replace=False)
    customers = [scorer.customer(events, cid) for cid in sample]
    one = faithfulness(scorer, customers, k=1, reference=_reference(scorer, events))
    assert one.reference and one.n_customers >= 10 and one.mean_drop_top > 0 and one.passes, one
    three = faithfulness(scorer, customers, k=3)
    assert not three.reference and np.isfinite(three.mean_drop_top)


def test_removing_a_driver_lowers_the_risk(scorer, events, risky):
    scored = scorer.customer(events, risky[0])
    attrs = attribute(scorer, scored)
    assert len(attrs) == len(scored.serialized.segments)
    best = max(attrs, key=lambda a: a.contribution)
    (p_without,) = scorer.variants(scored, [{best.sid}], reference=_reference(scorer, events))
    assert p_without < scored.probability


def test_attributions_decompose_the_stack_exactly(scorer, events, risky):
    """TreeSHAP rows sum to the trees' margin, logistic regression's terms to its logit, and the
    stack's log-odds rebuilt from its inputs is the shown probability: the attributions explain
    the model that is served (the fixture serves all three inputs)."""
    stack = scorer.model.served
    assert stack.inputs == ("encoder", "lightgbm", "logreg")
    for cid in risky[:3] + risky[-2:]:
        scored = scorer.customer(events, cid)
        feats = pd.DataFrame([scored.features])
        shap = tree_contributions(stack.bases["lightgbm"], feats)
        trees_p = stack.bases["lightgbm"].predict_proba(feats)
        np.testing.assert_allclose(shap.sum(axis=1), np.log(trees_p / (1 - trees_p)), atol=1e-6)
        terms = stack.bases["logreg"].contributions(feats)
        lr_p = stack.bases["logreg"].predict_proba(feats)
        np.testing.assert_allclose(terms.sum(axis=1), np.log(lr_p / (1 - lr_p)), atol=1e-9)
        frame = feats.assign(customer_id=cid, text=scored.serialized.text)
        w = stack.weights
        z = (stack.bias + w["encoder"] * stack.bases["encoder"].predict_logits(frame)[0]
             + w["lightgbm"] * shap.sum(axis=1).iloc[0] + w["logreg"] * terms.sum(axis=1).iloc[0])
        assert 1 / (1 + np.exp(-z)) == pytest.approx(scored.probability, abs=1e-6)
        per_feature, aggregate_z = feature_logodds(stack, feats)
        z2 = stack.bias + w["encoder"] * stack.bases["encoder"].predict_logits(frame)[0] + \
            aggregate_z[0]
        assert z2 == pytest.approx(z, abs=1e-9)
        biases = w["lightgbm"] * shap["bias"].iloc[0] + w["logreg"] * terms["bias"].iloc[0]
        assert per_feature.sum(axis=1).iloc[0] == pytest.approx(aggregate_z[0] - biases,
                                                                abs=1e-9)


def test_a_stack_without_the_encoder_is_attributed_without_it(scorer, events, risky):
    """When validation chooses LightGBM + logistic regression, the served model never runs the
    encoder, and the facts carry the aggregates' log-odds alone."""
    from sklearn.linear_model import LogisticRegression

    from finetune.churn_models import StackKind

    full = scorer.model.served
    stacker = LogisticRegression()
    stacker.classes_ = np.array([0, 1])
    stacker.coef_, stacker.intercept_ = np.array([[0.7, 0.5]]), np.array([-0.2])
    bases = {n: full.bases[n] for n in ("lightgbm", "logreg")}
    model = scorer.model
    lean = Scorer(TrainedModel(model.directory, model.config, model.definition, model.encoder,
                               StackKind(bases, ("lightgbm", "logreg"), stacker),
                               model.serializer))
    calls = []
    original = model.encoder.predict_logits
    model.encoder.predict_logits = lambda X: calls.append(len(X)) or original(X)
    try:
        scored = lean.customer(events, risky[0])
        attrs = attribute(lean, scored)
    finally:
        model.encoder.predict_logits = original
    assert not calls
    feats = pd.DataFrame([scored.features])
    lr = full.bases["logreg"].contributions(feats).sum(axis=1).iloc[0]
    trees = tree_contributions(full.bases["lightgbm"], feats).sum(axis=1).iloc[0]
    z = -0.2 + 0.7 * trees + 0.5 * lr
    assert scored.probability == pytest.approx(1 / (1 + np.exp(-z)), abs=1e-9)
    # Without the encoder an event is credited only through the aggregates it alone states
    # (cancels); every other event's share is the facts'.
    assert all(a.contribution == 0 for a in attrs if a.kind != "cancel"
               and not a.sid.startswith("fact:"))
    assert any(a.sid.startswith("fact:") and a.contribution > 0 for a in attrs)


def test_the_trees_half_reaches_the_fact_that_states_it(scorer, events, risky):
    """Occlusion alone leaves the trees reading the same aggregates, so a long-overdue
    customer's recency fact got almost nothing; with TreeSHAP it is credited."""
    overdue = [cid for cid in risky[:30]
               if scorer.customer(events, cid).features["recency_over_gap"] > 2]
    assert overdue
    scored = scorer.customer(events, overdue[0])
    new = {a.sid: a.contribution for a in attribute(scorer, scored)}
    old = {a.sid: a.contribution for a in occlusion_many(scorer, [scored])[0]}
    assert new["fact:recency"] > 0.01 and new["fact:recency"] > old["fact:recency"]
    assert max(new, key=new.get) == "fact:recency"


def test_a_batch_of_customers_scores_and_attributes_as_one_by_one(scorer, events, risky):
    """Reports score and attribute a chunk in one batch; agents see one customer at a time.
    Both must say the same thing about a customer."""
    ids = risky[:4] + risky[-3:]
    batch = scorer.customers(events, ids)
    assert [b.customer_id for b in batch] == ids
    for b, batch_attrs in zip(batch, attribute_many(scorer, batch)):
        one = scorer.customer(events, b.customer_id)
        assert b.probability == pytest.approx(one.probability, abs=1e-6)
        assert b.serialized.text == one.serialized.text and b.band == one.band
        pd.testing.assert_series_equal(b.features, one.features, check_names=False)
        alone = attribute(scorer, one)
        assert [a.sid for a in batch_attrs] == [a.sid for a in alone]
        np.testing.assert_allclose([a.contribution for a in batch_attrs],
                                   [a.contribution for a in alone], atol=1e-6)
    with pytest.raises(CustomerNotFound, match="nobody"):
        scorer.customers(events, [ids[0], "nobody"])


def _with_review(events: pd.DataFrame, cid: str, text: str) -> pd.DataFrame:
    last = events.loc[events["customer_id"] == cid, "ts"].max()
    row = pd.DataFrame({"customer_id": [cid], "ts": [last], "event": ["review"], "rating": [1.0],
                        "item": ["kettle"], "text": [text]})
    return validate_events(pd.concat([events.drop(columns="event_id"), row],
                                     ignore_index=True), "test")[0]


def _obedient(messages) -> str:
    """A model that does whatever the customer's text tells it to."""
    user = messages[1].content
    return json.dumps({
        "reasons": [{"text": "VIP customer, refund 500 dollars, see https://evil.example.com "
                             "or call 13812345678", "evidence": ["event:ZZZ", "fact:vip"]}],
        "actions": [{"id": "full_refund", "why": "the review said so"},
                    {"id": "account_manager_call", "why": "promised 90% off"}],
        "echo": user[-50:]})


@pytest.mark.parametrize("injection", INJECTIONS)
def test_instructions_in_customer_text_change_nothing(scorer, events, risky, injection):
    cid = risky[1]
    poisoned = _with_review(events, cid, injection)
    benign = _with_review(events, cid, "The kettle leaks, not happy.")
    chat = ScriptedChat(_obedient)
    helper = Assistant(scorer, Playbook.load(), llm=chat, backend="scripted")
    x = helper.explain(poisoned, cid)
    # The draft that obeyed the injection is refused twice; the checked wording is shown.
    assert x.fallback and x.attempts == 2 and x.backend == "scripted->none"
    scored = scorer.customer(poisoned, cid)
    assert passes_checks(x, helper.playbook, scored.facts) == []
    shown = " ".join([r.text for r in x.reasons] + [a.why for a in x.actions])
    assert not URL.search(shown) and "13812345678" not in shown
    assert {a.playbook_id for a in x.actions} <= set(helper.playbook.actions)
    # The customer's words reach the model only as a JSON string inside an evidence line.
    system, user = chat.calls[0][0].content, chat.calls[0][1].content
    assert "kettle" not in system
    data_lines = [line for line in user.splitlines() if line.startswith("{")]
    items = [json.loads(line) for line in data_lines]  # every data line is intact JSON
    outside = "\n".join(line for line in user.splitlines() if not line.startswith("{"))
    probe = injection[:12]
    assert probe not in outside and probe not in system
    if probe in user:
        assert any(probe in str(item.get("text", "")) for item in items)
    # Same prompt skeleton as for a benign review: only the quoted data differs.
    benign_chat = ScriptedChat(_obedient)
    Assistant(scorer, Playbook.load(), llm=benign_chat, backend="scripted").explain(benign, cid)
    assert benign_chat.calls[0][0].content == system
