"""One customer in, a checked explanation out: score, attribute, group, retrieve, write, check.

The evidence an explanation may cite is built here and nowhere else: the drivers of the score in
plain words (``assistant.drivers``), the customer's own retrieved documents, and the score
itself, all masked. Whatever writes the words (an LLM or the deterministic wording) cites ids
from this set, and must mention the top drivers (``CoverageRule``). ``prepare`` does everything
but the words, so the deterministic answer can be shown at once and the LLM's follow.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd
from langchain_core.language_models.chat_models import BaseChatModel

from assistant import experiment, wording
from assistant.attributions import attribute
from assistant.cache import ExplanationCache, snapshot_key
from assistant.drivers import CoverageRule, Driver, group, top
from assistant.experiment import Assignment, ExperimentConfig, RankedAction
from assistant.generate import generate, messages
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
from assistant.scoring import ScoredCustomer, Scorer, default_cutoff
from finetune.actions import HOLDOUT
from finetune.labels import as_cutoff
from finetune.pii import mask
from finetune.uplift import ActionEffect, UpliftModel

log = logging.getLogger("retention.assistant")
LANGUAGES = ("en", "zh")
RISK_ID = "score:risk"


@dataclass
class Context:
    """One customer's explanation before the words: shared by the deterministic first answer
    and the LLM's, so both cite the same evidence and offer the same actions."""

    scored: ScoredCustomer
    drivers: list[Driver]
    evidence: list[Evidence]
    assignment: Assignment | None
    ranked: list[RankedAction]
    lang: str
    required: list[Driver]  # the coverage rule's drivers

    @property
    def customer_id(self) -> str:
        return self.scored.customer_id


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
    coverage: CoverageRule = field(default_factory=CoverageRule)  # drivers a reason must cite
    cache: ExplanationCache | None = None  # finished explanations by snapshot (assistant.cache)

    def evidence(self, scored: ScoredCustomer, drivers: list[Driver], lang: str = "en"
                 ) -> list[Evidence]:
        """The score, the drivers that raise the risk most (the reasons) and the two that lower
        it most (the context), in plain words, then the customer's retrieved documents."""
        cid = scored.customer_id
        up = [d for d in drivers if d.contribution > 0][:self.n_evidence - 2]
        down = [d for d in sorted(drivers, key=lambda d: d.contribution)[:2]
                if d.contribution < 0]
        ranked = up + down
        items = [Evidence(id=RISK_ID, customer_id=cid, kind="score",
                          text=f"churn probability {round(100 * scored.probability)}% "
                               f"({scored.band})")]
        items += [Evidence(id=d.sid, customer_id=cid, kind=d.key, text=d.text(lang),
                           days_ago=d.days_ago, contribution=d.contribution, events=d.events)
                  for d in ranked]
        if self.store is not None:
            seen = {e.id for e in items} | {m for d in ranked for m in d.members}
            query = " ".join(d.text("en") for d in ranked[:3]) or "complaint"
            for doc in self.store.search(cid, query, k=self.n_documents + len(seen),
                                         before=scored.cutoff):
                if doc.id not in seen and len(items) < 1 + self.n_evidence + self.n_documents:
                    items.append(Evidence(id=doc.id, customer_id=doc.customer_id, kind=doc.kind,
                                          text=mask(doc.text)))
                    seen.add(doc.id)
        return items

    def drivers(self, scored: ScoredCustomer) -> list[Driver]:
        return group(scored, attribute(self.scorer, scored))

    def candidates(self, scored: ScoredCustomer, drivers: list[Driver]) -> list[Action]:
        return [r.action for r in self.ranked(scored, drivers)]

    def ranked(self, scored: ScoredCustomer, drivers: list[Driver],
               assignment: Assignment | None = None) -> list[RankedAction]:
        """Fitting actions, measured effects first, then the playbook's order (the reasons they
        answer, then priority); an explored customer's random pick first."""
        fitting = wording.rank_actions(self.playbook, scored, wording.keys(top(drivers)))
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

    def prepare(self, events: pd.DataFrame, customer_id: str, lang: str = "en",
                cutoff: pd.Timestamp | str | None = None) -> Context:
        """Everything but the words: score, drivers, evidence, candidate actions (no LLM)."""
        if lang not in LANGUAGES:
            raise ValueError(f"language {lang!r} is not supported; expected one of "
                             + ", ".join(LANGUAGES))
        scored = self.scorer.customer(events, customer_id, cutoff)
        drivers = self.drivers(scored)
        assignment = self.assignment(scored)
        return Context(scored, drivers, self.evidence(scored, drivers, lang), assignment,
                       self.ranked(scored, drivers, assignment), lang,
                       self.coverage.required(drivers))

    def deterministic(self, ctx: Context) -> Explanation:
        """The explanation without an LLM: what an agent sees first, in well under a second."""
        candidates = [r.action for r in ctx.ranked]
        draft = wording.draft(ctx.scored, ctx.drivers, self.playbook, ctx.lang,
                              ranked=candidates)
        return self._explanation(ctx, draft, backend="none")

    def write(self, ctx: Context) -> Explanation:
        """The LLM's checked wording, or the deterministic one when its drafts fail."""
        if self.llm is None:
            return self.deterministic(ctx)
        scored, candidates = ctx.scored, [r.action for r in ctx.ranked]
        by_id = {e.id: e for e in ctx.evidence}
        prompt = messages(ctx.customer_id, scored.probability, scored.band,
                          scored.cutoff.date().isoformat(), ctx.evidence, candidates, ctx.lang)
        required = {d.sid: wording.reason(d, ctx.lang) for d in ctx.required}
        spare = wording.draft(scored, ctx.drivers, self.playbook, ctx.lang,
                              ranked=candidates).actions
        gen = generate(self.llm, prompt, by_id, ctx.customer_id, self.playbook, scored.facts,
                       ctx.lang, {a.id for a in candidates}, required=required,
                       band=scored.band, spare_actions=spare)
        if gen.draft is None:
            reason = "; ".join(gen.problems)[:500]
            log.info("draft for %s failed its checks twice: %s", mask(ctx.customer_id), reason)
            fallback = self.deterministic(ctx)
            return fallback.model_copy(update={
                "backend": f"{self.backend}->none", "fallback": True,
                "fallback_reason": reason, "attempts": gen.attempts})
        return self._explanation(ctx, gen.draft, backend=self.backend, attempts=gen.attempts,
                                 dropped=gen.dropped, added=gen.added)

    def explain(self, events: pd.DataFrame, customer_id: str, lang: str = "en",
                cutoff: pd.Timestamp | str | None = None) -> Explanation:
        key = self.cache_key(events, customer_id, lang, cutoff)
        hit = self.cached(key)
        if hit is not None:
            return hit
        result = self.write(self.prepare(events, customer_id, lang, cutoff))
        self.remember(key, result)
        return result

    def context_token(self) -> str:
        """What ranks the actions besides the customer: the measured effects, the policy and
        the experiment. A refit changes it, so cached explanations from before are misses."""
        effects = sorted((k, round(e.uplift, 6), round(e.ci_low, 6), round(e.ci_high, 6), e.n)
                         for k, e in self.effects.items())
        return repr((effects, id(self.policy) if self.policy is not None else None,
                     self.experiment, self.coverage, self.playbook.version))

    def cache_key(self, events: pd.DataFrame, customer_id: str, lang: str,
                  cutoff: pd.Timestamp | str | None) -> str | None:
        if self.cache is None:
            return None
        at = as_cutoff(cutoff) if cutoff is not None else default_cutoff(events)
        return snapshot_key(events, customer_id, at, str(self.scorer.model.directory), lang,
                            self.backend if self.llm is not None else "none",
                            self.context_token())

    def cached(self, key: str | None) -> Explanation | None:
        """The explanation kept under ``cache_key``'s key, if any."""
        return self.cache.get(key) if key is not None and self.cache is not None else None

    def remember(self, key: str | None, result: Explanation) -> None:
        """Keep a finished explanation; a fallback is kept too (the same snapshot would fail
        the same way: greedy first attempt, seeded retry)."""
        if key is not None and self.cache is not None:
            self.cache.put(key, result)

    def _explanation(self, ctx: Context, draft: Draft, backend: str, attempts: int = 1,
                     dropped: list[str] | None = None, added: list[str] | None = None
                     ) -> Explanation:
        scored, assignment = ctx.scored, ctx.assignment
        info = {r.action.id: r for r in ctx.ranked}
        held_out = assignment is not None and assignment.arm == HOLDOUT
        first_explored = (ctx.ranked[0].action.id if assignment is not None and ctx.ranked
                          and assignment.arm == "explore" else None)
        return Explanation(
            customer_id=ctx.customer_id,
            risk=Risk(probability=scored.probability, band=scored.band,  # type: ignore[arg-type]
                      cutoff=scored.cutoff.date().isoformat()),
            reasons=[Reason(text=r.text, evidence=r.evidence) for r in draft.reasons],
            actions=[] if held_out else [SuggestedAction(
                playbook_id=a.id, text=self.playbook[a.id].text(ctx.lang), why=a.why,
                channel=self.playbook[a.id].channel, cost=self.playbook[a.id].cost,
                measured=info[a.id].measured if a.id in info else False,
                evidence=info[a.id].evidence if a.id in info else "no measurement yet",
                measurement=info[a.id].measurement if a.id in info else None,
                explored=a.id == first_explored) for a in draft.actions],
            experiment=(ExperimentArm(**assignment.to_dict())
                        if assignment is not None and assignment.arm in (HOLDOUT, "explore")
                        else None),
            evidence=ctx.evidence, language=ctx.lang,  # type: ignore[arg-type]
            backend=backend, attempts=max(attempts, 1), dropped=dropped or [],
            coverage=[d.sid for d in ctx.required], added=added or [])
