"""Does the learned action policy keep more customers than the playbook's fixed priority?

On the simulator's randomised campaign (``finetune.campaign``), whose true per-customer effects
are known, fit the uplift model on training customers and judge, on held-out customers, the share
retained under each policy: ``none``, ``priority`` (the playbook's first fitting action),
``learned`` (the uplift model's policy: the playbook's choice unless a measured action is expected
to keep clearly more customers; ``learned_net`` counts the actions' costs
against ``--value`` per kept customer) and ``oracle`` (the true best action). Also: whether each action's 95% interval covers its true average effect.

    python bench/uplift_policy.py --json                 # one JSON line
    python bench/uplift_policy.py --customers 40000      # a bigger campaign
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from assistant.experiment import default_policy
from assistant.playbook import Playbook
from finetune.actions import HOLDOUT, validate_actions
from finetune.campaign import generate_with_campaign
from finetune.features import FEATURE_COLUMNS
from finetune.labels import ChurnDefinition
from finetune.synthetic import SyntheticConfig
from finetune.uplift import NONE, UpliftConfig, UpliftModel, experiment_frame, test_mask


def policy_values(truth: pd.DataFrame, chosen: dict[str, pd.Series]) -> dict[str, float]:
    """Share retained among held-out customers: baseline plus the true effect of the choice."""
    tau = truth.pivot(index="customer_id", columns="action_id", values="true_effect")
    p0 = truth.groupby("customer_id")["p0"].first()
    out = {}
    for name, picks in chosen.items():
        picks = picks.reindex(tau.index).fillna(NONE)
        gain = np.array([0.0 if a == NONE else tau.at[c, a] for c, a in picks.items()])
        out[name] = float((p0.reindex(tau.index) + gain).mean())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--horizon", type=int, default=90)
    ap.add_argument("--min-sample", type=int, default=200)
    ap.add_argument("--value", type=float, default=100.0, help="worth of a kept customer")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = generate_with_campaign(SyntheticConfig(customers=args.customers, seed=args.seed,
                                                  campaign=True, campaign_horizon=args.horizon))
    t_sim = time.perf_counter() - t0
    actions, _ = validate_actions(data.actions, "campaign")
    definition = ChurnDefinition(horizon=args.horizon)
    frame = experiment_frame(data.events, actions, definition)
    test = test_mask(frame["customer_id"], 0.3, args.seed)
    train = frame[~test]
    held = frame[test].set_index("customer_id")
    feats = held[list(FEATURE_COLUMNS)]
    truth = data.truth[data.truth["customer_id"].isin(held.index)]
    playbook = Playbook.load()
    t1 = time.perf_counter()
    learned, rules, model = {}, {}, None
    # value 1e6: retention alone (the oracle's objective); --value: net of the actions' costs.
    for name, value in (("learned", 1e6), ("learned_net", args.value)):
        config = UpliftConfig(min_sample=args.min_sample, value_per_customer=value,
                              seed=args.seed)
        model = UpliftModel(config).fit(train, default_policy(playbook))
        learned[name] = model.recommend(feats).set_index("customer_id")["action_id"]
        rules[name] = model.rules()
    held_default = model._defaults(feats)
    t_fit = time.perf_counter() - t1
    tau = truth.pivot(index="customer_id", columns="action_id", values="true_effect")
    best = tau.idxmax(axis=1).where(tau.max(axis=1) > 0, NONE)
    values = policy_values(truth, {"none": pd.Series(NONE, index=tau.index),
                                   "priority": held_default, **learned, "oracle": best})
    gain = {k: v - values["none"] for k, v in values.items()}

    true_ate = data.truth.groupby("action_id")["true_effect"].mean()
    estimates, covered = [], []
    for e in model.effects_:
        truth_e = float(true_ate[e.action_id])
        ok = e.ci_low <= truth_e <= e.ci_high
        covered.append(ok)
        estimates.append({"action_id": e.action_id, "estimate": round(e.uplift, 4),
                          "ci": [round(e.ci_low, 4), round(e.ci_high, 4)], "n": e.n,
                          "true": round(truth_e, 4), "covered": bool(ok)})
    chosen = learned["learned"].value_counts().to_dict()
    result = {
        "bench": "uplift_policy", "customers": args.customers, "seed": args.seed,
        "campaign_customers": len(data.actions),
        "holdout": int((data.actions["action_id"] == HOLDOUT).sum()),
        "held_out": len(held),
        "policy_value": {k: round(v, 4) for k, v in values.items()},
        "gain_over_none": {k: round(v, 4) for k, v in gain.items()},
        "share_of_oracle_gain": round(gain["learned"] / gain["oracle"], 3)
        if gain["oracle"] > 0 else None,
        "learned_beats_priority": bool(values["learned"] > values["priority"]),
        "ci_coverage": round(float(np.mean(covered)), 3) if covered else None,
        "estimates": estimates, "learned_choices": chosen, "policy_rules": rules,
        "seconds": {"simulate": round(t_sim, 1), "fit": round(t_fit, 1)},
        "command": "python bench/uplift_policy.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
