"""The retention playbook: the closed list of actions the assistant may suggest, and when.

It is a data file users edit (YAML), so it is validated at load with errors that name the action
and field. Conditions are plain comparisons on the customer's facts (the feature aggregates plus
the probability), so whether an action fits is checked by code, never taken on an LLM's word.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from finetune.features import FEATURE_COLUMNS

OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "==": operator.eq, "!=": operator.ne}
KNOWN_FACTS = frozenset(FEATURE_COLUMNS) | {"probability"}


class PlaybookError(ValueError):
    pass


class Condition(BaseModel):
    fact: str
    op: Literal["<", "<=", ">", ">=", "==", "!="]
    value: float

    @field_validator("fact")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in KNOWN_FACTS:
            raise ValueError(f"unknown fact {v!r}; expected one of: probability, "
                             + ", ".join(FEATURE_COLUMNS))
        return v

    def holds(self, facts: Mapping[str, float]) -> bool:
        x = facts.get(self.fact)
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return False  # a fact we do not know never makes an action fit
        return bool(OPS[self.op](float(x), self.value))

    def describe(self) -> str:
        return f"{self.fact} {self.op} {self.value:g}"


class When(BaseModel):
    all: list[Condition] = Field(default_factory=list)
    any: list[Condition] = Field(default_factory=list)

    def holds(self, facts: Mapping[str, float]) -> bool:
        return (all(c.holds(facts) for c in self.all)
                and (not self.any or any(c.holds(facts) for c in self.any)))

    def describe(self) -> str:
        parts = [c.describe() for c in self.all]
        if self.any:
            parts.append("(" + " or ".join(c.describe() for c in self.any) + ")")
        return " and ".join(parts) or "always"


class Action(BaseModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{2,40}$")
    what: dict[str, str]
    channel: Literal["email", "phone", "sms", "in_app", "support"]
    cost: Literal["low", "medium", "high"]
    addresses: list[str] = Field(default_factory=list)
    when: When = Field(default_factory=When)
    priority: int = 0

    @model_validator(mode="after")
    def _english(self) -> Action:
        if "en" not in self.what:
            raise ValueError("'what' needs at least an English ('en') text")
        return self

    def text(self, lang: str) -> str:
        return self.what.get(lang) or self.what["en"]

    def fits(self, facts: Mapping[str, float]) -> bool:
        return self.when.holds(facts)


class Playbook:
    def __init__(self, actions: list[Action], source: str = "playbook") -> None:
        ids = [a.id for a in actions]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise PlaybookError(f"{source}: action id(s) used twice: {', '.join(dup)}")
        self.actions = {a.id: a for a in actions}
        self.source = source

    @property
    def version(self) -> str:
        """A digest of the actions: explanations cached under another playbook are misses."""
        import hashlib

        body = "\x1f".join(a.model_dump_json() for a in self.actions.values())
        return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]

    def __contains__(self, action_id: object) -> bool:
        return action_id in self.actions

    def __getitem__(self, action_id: str) -> Action:
        return self.actions[action_id]

    def eligible(self, facts: Mapping[str, float]) -> list[Action]:
        """Actions whose conditions hold, best first."""
        fit = [a for a in self.actions.values() if a.fits(facts)]
        return sorted(fit, key=lambda a: (-a.priority, a.id))

    @classmethod
    def load(cls, path: Path | None = None) -> Playbook:
        """The user's file, or the default that ships with the package."""
        if path is None:
            text = resources.files("assistant").joinpath("data/playbook.yaml").read_text("utf-8")
            source = "default playbook"
        else:
            if not path.exists():
                raise PlaybookError(f"playbook file {path} does not exist")
            text, source = path.read_text("utf-8"), str(path)
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PlaybookError(f"{source}: not valid YAML: {exc}") from exc
        if not isinstance(raw, list) or not raw:
            raise PlaybookError(f"{source}: expected a non-empty list of actions")
        actions = []
        for i, item in enumerate(raw):
            name = item.get("id", f"#{i + 1}") if isinstance(item, dict) else f"#{i + 1}"
            try:
                actions.append(Action.model_validate(item))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise PlaybookError(f"{source}: action {name}: field '{where}': "
                                    f"{first['msg']}") from exc
        return cls(actions, source)
