"""Scripted chat models for tests only: they answer from a script or from the prompt they get."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr


class ScriptedChat(BaseChatModel):
    """Replies with ``respond(messages)``; records every prompt it was sent."""

    _respond: Callable[[list[BaseMessage]], str] = PrivateAttr()
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    def __init__(self, respond: Callable[[list[BaseMessage]], str] | list[str], **kw: Any) -> None:
        super().__init__(**kw)
        if isinstance(respond, list):
            replies = iter(respond)
            self._respond = lambda _messages: next(replies)
        else:
            self._respond = respond

    @property
    def calls(self) -> list[list[BaseMessage]]:
        return self._calls

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self._calls.append(list(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            content=self._respond(messages)))])


def evidence_of(messages: list[BaseMessage]) -> list[dict]:
    """The evidence items (one JSON object per line) and candidate actions of an explanation
    prompt, as a scripted model would read them."""
    import json

    return [json.loads(line) for line in str(messages[-1].content).splitlines()
            if line.startswith("{")]


def grounded_reply(messages: list[BaseMessage], prefix: str = "Records show",
                   skip_top: bool = False, why: str = "It fits what happened.") -> str:
    """A draft that passes the checks: one reason per risk-raising evidence item, restating its
    words (so its figures), and the first candidate action. ``skip_top`` leaves out the
    strongest driver, as a model that misses the point would."""
    import json

    items = evidence_of(messages)
    drivers = [i for i in items if i.get("effect") == "raises the risk"]
    actions = [i for i in items if "what" in i]
    chosen = drivers[1:3] if skip_top else drivers[:2]
    reasons = [{"text": f"{prefix}: {d['text'].rstrip('.')}.", "evidence": [d["id"]]}
               for d in chosen] or [{"text": f"{prefix}: {items[0]['text']}.",
                                     "evidence": [items[0]["id"]]}]
    return json.dumps({"reasons": reasons,
                       "actions": [{"id": actions[0]["id"], "why": why}]})
