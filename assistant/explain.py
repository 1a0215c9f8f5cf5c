"""One customer in, a checked explanation out: score, attribute, retrieve, write, check.

The evidence an explanation may cite is built here and nowhere else: the segments the model read
(with their attributions), the customer's own retrieved documents, and the score itself, all
masked. Whatever writes the words (an LLM or the deterministic wording) cites ids from this set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
from langchain_core.language_models.chat_models import BaseChatModel

from assistant import experiment, wording
from assistant.attributions import Attribution, attribute
from assistant.experiment import Assignment, ExperimentConfig, RankedAction
from assistant.generate import generate, messages
from assistant.pii import mask
from assistant.playbook import Action, Playbook
from assistant.retrieval import ContextStore
from assistant.schema import (
    Draft,
    Evidence,
    ExperimentArm,
    Explanation,
    Reason,
    Risk,
    SuggestedAction,
)
from assistant.scoring import ScoredCustomer, Scorer
from finetune.actions import HOLDOUT
from finetune.uplift import ActionEffect, UpliftModel

log = logging.getLogger("retention.assistant")
LANGUAGES = ("en", "zh")
RISK_ID = "score:risk"


@dataclass
class Assistant:
    scorer: Scorer
    playbook: Playbook
    store: ContextStore | None = None
    llm: BaseChatModel | None = None
    backend: str = "none"
    n_evidence: int = 6  # top attributed segments shown to the writer
    n_documents: int = 3  # retrieved documents added to them
    n_candidates: int = 4  # playbook actions offered to the writer
    experiment: ExperimentConfig | None = None  # holdout and exploration (assistant.experiment)
    effects: dict[str, ActionEffect] = field(default_factory=dict)  # measured, by action id
    policy: UpliftModel | None = None  # the learned per-customer policy, when actions are measured

    def evidence(self, scored: ScoredCustomer, attributions: list[Attribution]
                 ) -> list[Evidence]:
        cid = scored.customer_id
        # What raises the risk most (the reasons), then what lowers it most (the context).
        up = sorted(attributions, key=lambda a: -a.contribution)[:self.n_evidence - 2]
        down = [a for a in sorted(attributions, key=lambda a: a.contribution)[:2]
                if a.contribution < 0 and a not in up]
        ranked = up + down
        items = [Evidence(id=RISK_ID, customer_id=cid, kind="score",
                          text=f"churn probability {round(100 * scored.probability)}% "
                               f"({scored.band})")]
        items += [Evidence(id=a.sid, customer_id=cid, kind=a.kind, text=mask(a.text),
                           days_ago=a.days_ago, contribution=a.contribution) for a in ranked]
        if self.store is not None:
            seen = {e.id for e in items}
            query = " ".join(a.text for a in ranked[:3]) or "complaint"
            for doc in self.store.search(cid, query, k=self.n_documents + len(seen),
                                         before=scored.cutoff):
                if doc.id not in seen and len(items) < 1 + self.n_evidence + self.n_documents:
                    items.append(Evidence(id=doc.id, customer_id=doc.customer_id, kind=doc.kind,
                                          text=doc.text))
                    seen.add(doc.id)
        return items

    def candidates(self, scored: ScoredCustomer, attributions: list[Attribution]
                   ) -> list[Action]:
        return [r.action for r in self.ranked(scored, attributions)]

    def ranked(self, scored: ScoredCustomer, attributions: list[Attribution],
               assignment: Assignment | None = None) -> list[RankedAction]:
        """Fitting actions, measured effects first, then the playbook's order (the reasons they
        answer, then priority); an explored customer's random pick first."""
        keys = [wording.reason_key(a.sid, a.kind) for a in wording.drivers(attributions)]
        fitting = wording.rank_actions(self.playbook, scored, keys)
        value = self.experiment.value_per_customer if self.experiment else 100.0
        ranked = experiment.rank(fitting, self.effects, value)
        if self.policy is not None:
            ranked = experiment.personalised(ranked, self.policy, scored)
        if assignment is not None:
            ranked = experiment.explored(ranked, assignment)
        return ranked[:self.n_candidates]

    def assignment(self, scored: ScoredCustomer) -> Assignment | None:
        if self.experiment is None:
            return None
        return experiment.assign(scored.customer_id, scored.probability, scored.cutoff,
                                 self.experiment)

    def explain(self, events: pd.DataFrame, customer_id: str, lang: str = "en",
                cutoff: pd.Timestamp | str | None = None) -> Explanation:
        if lang not in LANGUAGES:
            raise ValueError(f"language {lang!r} is not supported; expected one of "
                             + ", ".join(LANGUAGES))
        scored = self.scorer.customer(events, customer_id, cutoff)
        attributions = attribute(self.scorer, scored)
        evidence = self.evidence(scored, attributions)
        by_id = {e.id: e for e in evidence}
        assignment = self.assignment(scored)
        ranked = self.ranked(scored, attributions, assignment)
        candidates = [r.action for r in ranked]
        info = {r.action.id: r for r in ranked}
        draft: Draft | None = None
        attempts, reason, dropped = 0, None, []
        if self.llm is not None:
            prompt = messages(customer_id, scored.probability, scored.band,
                              scored.cutoff.date().isoformat(), evidence, candidates, lang)
            gen = generate(self.llm, prompt, by_id, customer_id, self.playbook, scored.facts,
                           lang, {a.id for a in candidates})
            draft, attempts, dropped = gen.draft, gen.attempts, gen.dropped
            if draft is None:
                reason = "; ".join(gen.problems)[:500]
                log.info("draft for %s failed its checks twice: %s", mask(customer_id), reason)
        fallback = self.llm is not None and draft is None
        if draft is None:
            draft = wording.draft(scored, attributions, self.playbook, lang, ranked=candidates)
        held_out = assignment is not None and assignment.arm == HOLDOUT
        first_explored = (candidates[0].id if assignment is not None and candidates
                          and assignment.arm == "explore" else None)
        return Explanation(
            customer_id=customer_id,
            risk=Risk(probability=scored.probability, band=scored.band,  # type: ignore[arg-type]
                      cutoff=scored.cutoff.date().isoformat()),
            reasons=[Reason(text=r.text, evidence=r.evidence) for r in draft.reasons],
            actions=[] if held_out else [SuggestedAction(
                playbook_id=a.id, text=self.playbook[a.id].text(lang), why=a.why,
                channel=self.playbook[a.id].channel, cost=self.playbook[a.id].cost,
                measured=info[a.id].measured if a.id in info else False,
                evidence=info[a.id].evidence if a.id in info else "no measurement yet",
                explored=a.id == first_explored) for a in draft.actions],
            experiment=(ExperimentArm(**assignment.to_dict())
                        if assignment is not None and assignment.arm in (HOLDOUT, "explore")
                        else None),
            evidence=evidence, language=lang,  # type: ignore[arg-type]
            backend=self.backend if not fallback else f"{self.backend}->none",
            fallback=fallback, fallback_reason=reason, attempts=max(attempts, 1),
            dropped=dropped if not fallback else [])
