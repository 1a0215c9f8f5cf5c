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
