"""What the API's routes share: the database, the clock, the model, the assistant, rescoring and
warning delivery.

Built once per app (in its lifespan) and handed to routes by dependency injection, so tests build
their own with their own settings and nothing is global.

The scorer stands alone: scoring and risk need the model only, so a missing or broken LLM makes
explanations and chat answer a problem while CRMs keep scoring. The model follows the model
root's ``CURRENT``: ``retention models use/rollback`` or a new ``train`` takes effect between
requests, without a restart (the new version is loaded before it replaces the old one).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from assistant.experiment import ExperimentConfig, default_policy
from assistant.explain import Assistant
from assistant.playbook import Playbook
from assistant.scoring import Scorer
from finetune.actions import HOLDOUT
from finetune.artifacts import resolve_version_dir
from finetune.pii import mask
from finetune.uplift import (
    ActionEffect,
    UpliftConfig,
    UpliftModel,
    action_effects,
    evaluate_uplift,
    experiment_frame,
)
from service import db, wiring
from service.clock import Clock, parse_as_of
from service.erasure import ErasureReport, forget
from service.gate import ScoringGate
from service.jobs import ReportJobs
from service.outbox import Sender, SenderConfig
from service.ratelimit import RateLimiter
from service.rescore import RescoreSummary, rescore_all
from service.scheduler import DailyRescore, parse_time
from service.scores import WarnRule, record_scores
from service.settings import Settings

log = logging.getLogger("retention.service")
MODEL_CHECK_S = 1.0  # how often CURRENT is looked at (a stat and a small read)


class ConfigError(ValueError):
    """Settings that cannot work together; the service refuses to start with them."""


@dataclass
class Services:
    settings: Settings
    engine: Any = None
    Session: Any = None
    clock: Clock = field(init=False)
    gate: ScoringGate = field(default_factory=ScoringGate)
    sender: Sender | None = None
    daily: DailyRescore | None = None
    daily_at: Any = None
    _scorer: Scorer | None = None
    _model_dir: Path | None = None
    _checked_at: float = 0.0
    _assistant: Assistant | None = None
    _load_lock: threading.Lock = field(default_factory=threading.Lock)
    _assistant_lock: threading.Lock = field(default_factory=threading.Lock)
    _rescore_lock: threading.Lock = field(default_factory=threading.Lock)
    _effects_lock: threading.Lock = field(default_factory=threading.Lock)
    _effects: dict = field(default_factory=dict)
    _effects_key: tuple | None = None
    _playbook: Playbook | None = None
    _policy: UpliftModel | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    jobs: ReportJobs = field(init=False)
    limiter: RateLimiter = field(init=False)

    @staticmethod
    def check(settings: Settings) -> None:
        """Refuse settings that cannot work, with a message that says what to set."""
        if settings.webhook_url and not settings.webhook_secret:
            raise ConfigError("RETENTION_WEBHOOK_URL is set but RETENTION_WEBHOOK_SECRET is "
                              "empty: receivers could not verify warnings; set a secret "
                              "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)")
        try:
            parse_time(settings.rescore_at)
            parse_as_of(settings.as_of)
        except ValueError as exc:
            raise ConfigError(f"{exc} (RETENTION_RESCORE_AT / RETENTION_AS_OF)") from exc

    def __post_init__(self) -> None:
        s = self.settings
        self.check(s)
        self.daily_at = parse_time(s.rescore_at)
        self.clock = Clock(s.as_of, newest_event=self._newest_event)
        self.engine = db.engine_for(s.db_url)
        self.Session = db.sessions(self.engine)
        self.jobs = ReportJobs(self)
        self.limiter = RateLimiter(s.rate_limit)
        if s.webhook_url:
            self.sender = Sender(self.Session, SenderConfig(
                url=s.webhook_url, secret=s.webhook_secret or "", timeout_s=s.webhook_timeout_s,
                max_attempts=s.webhook_max_attempts, backoff_s=s.webhook_backoff_s,
                backoff_max_s=s.webhook_backoff_max_s))

    def _newest_event(self) -> pd.Timestamp | None:
        with self.Session() as session:
            return db.newest_event(session)

    def start(self) -> None:
        """Background work: report jobs left over, warning delivery, the daily rescoring; the
        access log is pruned to its retention period (and again after each rescoring)."""
        self.prune_access()
        self.jobs.resume_unfinished()
        if self.sender is not None:
            self.sender.start()
        if self.daily_at is not None:
            self.daily = DailyRescore(self.daily_at, run=self.rescore_all,
                                      done_for_current=self._done_for_current)
            self.daily.start()

    def stop(self) -> None:
        self._stopping.set()  # a rescoring stops at its next partition and resumes later
        if self.daily is not None:
            self.daily.stop()
        self.jobs.stop()
        if self.sender is not None:
            self.sender.stop()
        self.engine.dispose()

    def _done_for_current(self) -> bool:
        with self.Session() as session:
            run = session.get(db.RescoreRunRow, self.as_of().date().isoformat())
            return run is not None and run.status == "done"

    # ---- the model --------------------------------------------------------------------------
    @property
    def model_root(self) -> Path:
        return self.settings.model_dir or self.settings.models_path

    @property
    def scorer(self) -> Scorer:
        """The current model; reloaded when CURRENT names another version."""
        now = time.monotonic()
        if self._scorer is not None and now - self._checked_at < MODEL_CHECK_S:
            return self._scorer
        with self._load_lock:
            wanted = resolve_version_dir(self.model_root)
            self._checked_at = now
            if self._scorer is None or wanted != self._model_dir:
                fresh = wiring.scorer(self.settings, wanted)
                if self._scorer is not None:
                    log.info("model switched from %s to %s", self._model_dir, wanted)
                self._scorer, self._model_dir = fresh, wanted
            return self._scorer

    @property
    def assistant(self) -> Assistant:
        """Scorer plus playbook, retrieval and the LLM (only explanations and chat need it),
        with the experiment's settings and the measured effects of the actions."""
        scorer = self.scorer
        effects = self.effects()
        with self._assistant_lock:  # the LLM loads in seconds: scoring does not wait for it
            if self._assistant is None:
                self._assistant = wiring.assistant(self.settings, with_scorer=scorer)
                self._assistant.experiment = self.experiment_config()
            elif self._assistant.scorer is not scorer:
                self._assistant = dataclasses.replace(self._assistant, scorer=scorer)
            self._assistant.effects, self._assistant.policy = effects, self._policy
            return self._assistant

    # ---- actions and what they did ----------------------------------------------------------
    def assistant_playbook(self) -> Playbook:
        """The playbook alone (recording an action must not wait for the LLM to load)."""
        if self._playbook is None:
            self._playbook = Playbook.load(self.settings.playbook)
        return self._playbook

    def experiment_config(self) -> ExperimentConfig:
        s = self.settings
        return ExperimentConfig(holdout=s.holdout, explore=s.explore,
                                period_days=s.experiment_period_days, at_risk=s.band_medium,
                                value_per_customer=s.value_per_customer)

    def uplift_config(self) -> UpliftConfig:
        return UpliftConfig(min_sample=self.settings.uplift_min_sample,
                            value_per_customer=self.settings.value_per_customer)

    def _experiment_data(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        with self.Session() as session:
            actions = db.load_actions(session)
            customers = sorted(set(actions["customer_id"])) if not actions.empty else []
            events = self.events(session, customers) if customers else self.events(session, [])
        return events, actions

    def effects(self) -> dict[str, ActionEffect]:
        """Measured effects by action id, and the learned policy when an action is measured
        (cached until actions, events or the date change); outcomes only from events before
        the as-of date."""
        as_of = self.as_of()
        with self.Session() as session:
            key = (db.count_actions(session), str(db.newest_event(session)), str(as_of))
        with self._effects_lock:
            if self._effects_key == key:
                return self._effects
        events, actions = self._experiment_data()
        found: dict[str, ActionEffect] = {}
        policy = None
        if not actions.empty and not events.empty:
            frame = experiment_frame(events, actions, self.scorer.model.definition,
                                     data_end=as_of)
            if not frame.empty:
                found = {e.action_id: e for e in action_effects(frame, self.uplift_config())
                         if e.causal}
                if any(e.measured for e in found.values()):
                    policy = UpliftModel(self.uplift_config()).fit(
                        frame, default_policy(self.assistant_playbook()))
        with self._effects_lock:
            self._effects, self._policy, self._effects_key = found, policy, key
        return found

    def uplift_report(self) -> dict:
        """Per-action effects, the Qini coefficient and the held-out policy value (admin)."""
        events, actions = self._experiment_data()
        as_of = self.as_of()
        empty = {"as_of": as_of.date().isoformat(), "effects": [], "qini": {},
                 "policy_value": {}, "n_rows": 0, "n_test": 0, "pending": len(actions),
                 "measured_actions": [], "rules": []}
        if actions.empty or events.empty or not (actions["action_id"] == HOLDOUT).any():
            return {**empty, "note": "no holdout recorded yet: nothing can be measured"}
        try:
            report = evaluate_uplift(events[events["ts"] < as_of],
                                     actions[actions["ts"] < as_of],
                                     self.scorer.model.definition, self.uplift_config(),
                                     default_policy(self.assistant_playbook()))
        except ValueError as exc:
            return {**empty, "note": str(exc)}
        return {**report.to_dict(), "as_of": as_of.date().isoformat(),
                "rules": report.model.rules()}

    @property
    def model_version(self) -> str:
        return self.scorer.model.directory.name

    # ---- scores -----------------------------------------------------------------------------
    def as_of(self) -> pd.Timestamp:
        return self.clock.as_of()

    def warn_rule(self) -> WarnRule:
        return WarnRule(self.settings.risk_threshold, deliver=self.sender is not None)

    def events(self, session: Session, customers: list[str] | None = None) -> pd.DataFrame:
        return db.load_events(session, customers)

    def score(self, scorer: Scorer, events: pd.DataFrame, ids: list[str],
              as_of: pd.Timestamp) -> pd.DataFrame:
        """Scores at ``as_of``; a request bigger than one chunk is scored chunk by chunk as bulk
        work, so an agent's request waits for one chunk at most."""
        chunk = self.settings.score_chunk
        frames = []
        for start in range(0, len(ids), chunk):
            with self.gate.bulk() if len(ids) > chunk else self.gate.interactive():
                frames.append(scorer.score(events, cutoff=as_of,
                                           customers=ids[start:start + chunk]))
        if not frames:
            return pd.DataFrame(columns=["customer_id", "cutoff", "probability", "band"])
        return pd.concat(frames, ignore_index=True)

    def rescore(self, session: Session, customers: list[str]) -> list[dict]:
        """Score these customers at the as-of date; store scores and warnings together."""
        as_of = self.as_of()
        events = self.events(session, customers)
        if events.empty:
            return []
        scorer = self.scorer
        known = set(events["customer_id"])
        scores = self.score(scorer, events, [c for c in customers if c in known], as_of)
        if scores.empty:
            return []
        records = record_scores(session, scores, as_of, scorer.model.directory.name,
                                self.warn_rule())
        session.commit()
        if self.sender is not None and any(r.get("new_warning") for r in records):
            self.sender.wake()
        return records

    def rescore_all(self, as_of: pd.Timestamp | None = None, force: bool = False,
                    progress=None) -> RescoreSummary:
        """Every stored customer at the as-of date (the daily job); one run at a time."""
        with self._rescore_lock:
            summary = rescore_all(self.Session, self.scorer, as_of or self.as_of(),
                                  self.warn_rule(), self.settings.home / "rescore",
                                  gate=self.gate, force=force, progress=progress,
                                  should_stop=self._stopping.is_set,
                                  experiment=self.experiment_config())
        if self.sender is not None and summary.warnings:
            self.sender.wake()
        self.prune_access()
        if self.settings.precompute_top and not self._stopping.is_set():
            self.precompute(as_of or self.as_of())
        return summary

    def precompute(self, as_of: pd.Timestamp) -> int:
        """Explain the riskiest ``precompute_top`` customers at ``as_of`` into the cache, in
        bulk priority (agents' requests go first); returns how many were written. A customer
        that fails is logged and skipped: precomputing is a convenience, never a failure."""
        n = self.settings.precompute_top
        langs = [x.strip() for x in self.settings.precompute_langs.split(",") if x.strip()]
        day = as_of.date().isoformat()
        with self.Session() as session:
            ids = list(session.scalars(
                select(db.ScoreRow.customer_id).where(db.ScoreRow.cutoff == day)
                .order_by(db.ScoreRow.probability.desc(), db.ScoreRow.customer_id).limit(n)))
            events = self.events(session, ids) if ids else pd.DataFrame()
        helper, done = self.assistant, 0
        for cid in ids:
            for lang in langs:
                if self._stopping.is_set():
                    return done
                try:
                    key = helper.cache_key(events, cid, lang, as_of)
                    if helper.cached(key) is not None:
                        continue
                    with self.gate.bulk():  # the model pass; the LLM writes outside the gate
                        ctx = helper.prepare(events, cid, lang=lang, cutoff=as_of)
                    helper.remember(key, helper.write(ctx))
                    done += 1
                except Exception:  # one customer must not stop the rest
                    log.exception("precomputing the explanation of %s failed", mask(cid))
        log.info("precomputed %d explanation(s) for the %d riskiest customers at %s",
                 done, len(ids), day)
        return done

    # ---- privacy ----------------------------------------------------------------------------
    def prune_access(self) -> int:
        with self.Session() as session:
            return db.prune_access(session, self.settings.audit_days)

    def forget(self, customer_id: str, actor: str) -> ErasureReport:
        """Erase one customer everywhere (``service.erasure``); rescoring and scoring wait, so
        no job writes the customer back while they are being erased."""
        with self._rescore_lock, self.gate.bulk():
            helper = self._assistant
            store = helper.store if helper is not None else None
            return forget(self.Session, customer_id, actor, self.settings.home, store=store,
                          forget_cached=helper.cache.forget if helper is not None and
                          helper.cache is not None else None,
                          store_path=self.settings.store_path)

    def rescore_busy(self) -> bool:
        return self._rescore_lock.locked()
