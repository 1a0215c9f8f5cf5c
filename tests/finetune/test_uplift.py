"""Uplift: the simulator's campaign carries ground truth; per-action effects recover a planted
effect with an honest interval; chosen actions are never called causal; the policy keeps the
playbook's choice without evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finetune.actions import HOLDOUT, validate_actions
from finetune.campaign import CAMPAIGN_ARMS, generate_with_campaign, segments, true_rates
from finetune.features import FEATURE_COLUMNS
from finetune.synthetic import SyntheticConfig
from finetune.uplift import NONE, UpliftConfig, UpliftModel, action_effects, experiment_frame

SMALL = SyntheticConfig(customers=700, seed=3, days=400, campaign=True, campaign_replicates=4)


@pytest.fixture(scope="module")
def campaign():
    return generate_with_campaign(SMALL)


def test_campaign_is_randomised_with_known_heterogeneous_effects(campaign):
    actions, _ = validate_actions(campaign.actions, "campaign")
    assert actions["customer_id"].is_unique and (actions["source"] == "random").all()
    assert set(actions["action_id"]) <= {HOLDOUT, *CAMPAIGN_ARMS}
    truth = campaign.truth
    assert set(truth["action_id"]) == set(CAMPAIGN_ARMS)
    assert len(truth) == len(actions) * len(CAMPAIGN_ARMS)
    assert truth["true_effect"].between(-1, 1).all() and truth["p0"].between(0, 1).all()
    # The same seed gives the same campaign.
    again = generate_with_campaign(SMALL)
    pd.testing.assert_frame_equal(again.actions, campaign.actions)


def test_true_effects_depend_on_what_the_customer_did():
    feats = pd.DataFrame([dict.fromkeys(FEATURE_COLUMNS, 0.0)] * 2).assign(rating_last=5.0)
    feats.loc[0, ["tickets_90d", "avg_amount", "frequency"]] = [2, 120, 2]  # a complainer
    feats.loc[1, ["avg_amount", "frequency", "recency_over_gap"]] = [120, 20, 0.5]  # loyal
    rates = true_rates(feats)
    assert rates["apology_replacement"][0][0] > rates["apology_replacement"][0][1]
    assert rates["winback_email"][1][1] > 0  # contact slightly harms the loyal
    assert rates["personal_coupon"][0].max() == 0  # neither is price-sensitive
    assert segments(feats)["loyal"].tolist() == [False, True]


def _planted(n: int = 4000, effect: float = 0.12, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.choice([HOLDOUT, "winback_email", "feedback_survey"], n)
    y = rng.random(n) < 0.45 + effect * (arm == "winback_email")
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(n)], "action_id": arm,
                          "source": "random", "cost": np.where(arm == HOLDOUT, 0.0, 1.0),
                          "retained": y.astype(float)})
    for col in FEATURE_COLUMNS:
        frame[col] = rng.normal(size=n)
    return frame


def test_effects_recover_a_planted_effect_and_mark_chosen_actions():
    frame = _planted()
    chosen = _planted(600, effect=0.3, seed=1).assign(source="agent", action_id="personal_coupon")
    chosen["customer_id"] = "A" + chosen["customer_id"]
    effects = {e.action_id: e for e in action_effects(pd.concat([frame, chosen]),
                                                      UpliftConfig(min_sample=200))}
    win, fb, coupon = effects["winback_email"], effects["feedback_survey"], effects[
        "personal_coupon"]
    assert win.causal and win.measured and win.ci_low < 0.12 < win.ci_high and win.ci_low > 0
    assert fb.ci_low < 0 < fb.ci_high
    assert win.cost_per_kept == pytest.approx(1.0 / win.uplift)
    assert not coupon.causal and "NOT causal" in coupon.method and coupon.adjusted is not None
    assert coupon.label() == "no measurement yet"


def test_the_policy_keeps_the_playbook_without_evidence():
    frame = _planted(300)
    playbook_says = lambda feats, risk: pd.Series("feedback_survey", index=feats.index)
    model = UpliftModel(UpliftConfig(min_sample=500)).fit(frame, playbook_says)
    assert model.learner_ is None and model.actions_ == []
    recs = model.recommend(frame.set_index("customer_id")[list(FEATURE_COLUMNS)].head(5))
    assert (recs["action_id"] == "feedback_survey").all()
    none = UpliftModel(UpliftConfig(min_sample=500)).fit(frame)
    assert (none.recommend(frame.set_index("customer_id")[list(FEATURE_COLUMNS)])["action_id"]
            == NONE).all()


def test_outcomes_and_features_of_the_campaign(campaign):
    actions, _ = validate_actions(campaign.actions, "campaign")
    from finetune.labels import ChurnDefinition

    frame = experiment_frame(campaign.events, actions, ChurnDefinition(horizon=90))
    assert len(frame) == len(actions)  # every window is covered by the simulated days
    # Features are as of the campaign's midnight: nothing from that day or after.
    assert (frame["cutoff"] == campaign.campaign_ts.floor("D")).all()
    held = frame[frame["action_id"] == HOLDOUT]["retained"].mean()
    truth = campaign.truth.groupby("customer_id")["p0"].first()
    assert abs(held - truth.mean()) < 0.12  # the holdout retains like the baseline says
