"""The built-in experiment: stable holdout of the configured share, exploration, and the
ranking that uses measured effects only when they are sufficient."""

from __future__ import annotations

import pandas as pd

from assistant.experiment import ExperimentConfig, assign, explored, rank
from assistant.playbook import Playbook
from finetune.uplift import ActionEffect

AS_OF = pd.Timestamp("2026-12-02", tz="UTC")


def test_holdout_is_stable_and_has_the_configured_share():
    config = ExperimentConfig(holdout=0.1)
    ids = [f"C{i:06d}" for i in range(20000)]
    arms = [assign(c, 0.8, AS_OF, config).arm for c in ids]
    share = arms.count("holdout") / len(ids)
    assert 0.09 < share < 0.11
    # Within a period the arm never changes (recomputed on another day of the same period).
    start = pd.Timestamp(assign(ids[0], 0.8, AS_OF, config).period, tz="UTC")
    assert arms == [assign(c, 0.8, start + pd.Timedelta(days=29), config).arm for c in ids]
    later = [assign(c, 0.8, AS_OF + pd.Timedelta(days=60), config).arm for c in ids]
    assert later != arms  # a new period draws anew
    held = next(c for c, a in zip(ids, arms, strict=True) if a == "holdout")
    why = assign(held, 0.8, AS_OF, config).why
    assert why.startswith("holdout: do not contact") and "10%" in why
    assert assign(held, 0.1, AS_OF, config).arm == "not_at_risk"
    assert assign(held, 0.8, AS_OF, ExperimentConfig(holdout=0.0)).arm == "off"


def test_explore_puts_a_random_fitting_action_first():
    config = ExperimentConfig(holdout=0.0, explore=1.0)
    book = Playbook.load()
    ranked = rank(list(book.actions.values())[:4], {}, 100.0)
    firsts = {explored(ranked, assign(f"C{i}", 0.9, AS_OF, config))[0].action.id
              for i in range(200)}
    assert len(firsts) == 4


def _effect(action_id: str, uplift: float, n: int, lo: float | None = None) -> ActionEffect:
    return ActionEffect(action_id=action_id, source="randomised", causal=True, n=n,
                        n_holdout=n, retained=0.5 + uplift, holdout_retained=0.5, uplift=uplift,
                        ci_low=uplift - 0.03 if lo is None else lo, ci_high=uplift + 0.03,
                        cost_per_customer=1.0, cost_per_kept=None, measured=n >= 200,
                        method="randomised")


def test_ranking_uses_measurements_only_above_the_minimum_sample():
    book = Playbook.load()
    actions = [book[a] for a in ("apology_replacement", "personal_coupon", "winback_email",
                                 "feedback_survey")]
    # Below the minimum sample: the playbook's order, and says so.
    few = rank(actions, {"winback_email": _effect("winback_email", 0.2, 50)}, 100.0)
    assert [r.action.id for r in few] == [a.id for a in actions]
    assert all(not r.measured and r.evidence == "no measurement yet" for r in few)
    # Measured and paying: first, with its figures; measured to lose customers: left out.
    many = rank(actions, {"winback_email": _effect("winback_email", 0.041, 1240, lo=0.012),
                          "feedback_survey": _effect("feedback_survey", -0.08, 900)}, 100.0)
    assert [r.action.id for r in many] == ["winback_email", "apology_replacement",
                                           "personal_coupon"]
    assert many[0].evidence == ("measured: +4.1 points retained, 95% CI 1.2 to 7.1, n=1,240")
    # ... and as numbers, rounded as the line rounds them (the page words them per language)
    assert many[0].measurement == {"uplift_points": 4.1, "ci_low_points": 1.2,
                                   "ci_high_points": 7.1, "n": 1240}
    assert all(r.measurement is None for r in many[1:])


def test_the_learned_policy_goes_first_with_the_uplift_it_expects():
    """For a measured action the learned policy picks, the line and the numbers both carry
    the uplift expected for customers like this one."""
    from types import SimpleNamespace

    from assistant.experiment import personalised

    class Policy:  # UpliftModel.recommend's contract, for one customer
        def recommend(self, features: pd.DataFrame, allowed: dict) -> pd.DataFrame:
            assert allowed == {"C1": ["winback_email", "feedback_survey", "apology_replacement"]}
            return pd.DataFrame({"action_id": ["feedback_survey"], "expected_uplift": [0.0349]},
                                index=features.index)

    book = Playbook.load()
    ranked = rank([book[a] for a in ("apology_replacement", "winback_email", "feedback_survey")],
                  {"winback_email": _effect("winback_email", 0.041, 1240, lo=0.012),
                   "feedback_survey": _effect("feedback_survey", 0.02, 900, lo=0.001)}, 100.0)
    scored = SimpleNamespace(customer_id="C1", features=pd.Series({"orders_90d": 2.0}))
    first = personalised(ranked, Policy(), scored)[0]  # type: ignore[arg-type]
    assert first.action.id == "feedback_survey"
    assert first.evidence.endswith("; for customers like this one: +3.5 points expected")
    assert first.measurement == {"uplift_points": 2.0, "ci_low_points": 0.1,
                                 "ci_high_points": 5.0, "n": 900, "expected_points": 3.5}
