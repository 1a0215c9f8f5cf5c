"""Build the assistant's parts from settings, once, for the CLI and the API alike."""

from __future__ import annotations

from pathlib import Path

from assistant.cache import ExplanationCache
from assistant.explain import Assistant
from assistant.llm import LLMConfig, chat_model
from assistant.playbook import Playbook
from assistant.retrieval import ContextStore
from assistant.scoring import Bands, Scorer
from finetune.artifacts import TrainedModel
from service.settings import Settings


def llm_config(settings: Settings, backend: str | None = None) -> LLMConfig:
    return LLMConfig(backend=backend or settings.llm_backend, model_path=settings.llm_model_path,
                     n_threads=settings.llm_threads, n_batch=settings.llm_batch,
                     max_tokens=settings.llm_max_tokens,
                     seed=settings.seed, openai_base_url=settings.openai_base_url,
                     openai_model=settings.openai_model, openai_api_key=settings.openai_api_key)


def scorer(settings: Settings, model_dir: Path | None = None) -> Scorer:
    model = TrainedModel.load(model_dir or settings.model_dir or settings.models_path)
    return Scorer(model, Bands(settings.band_medium, settings.band_high))


def assistant(settings: Settings, model_dir: Path | None = None, backend: str | None = None,
              store: bool = True, with_scorer: Scorer | None = None) -> Assistant:
    """``with_scorer``: an already loaded model (the service's), else one is loaded."""
    config = llm_config(settings, backend)
    return Assistant(scorer=with_scorer or scorer(settings, model_dir),
                     playbook=Playbook.load(settings.playbook),
                     store=ContextStore(settings.store_path) if store else None,
                     llm=chat_model(config), backend=config.backend,
                     cache=ExplanationCache(settings.explain_cache))


def check_llm(helper: Assistant) -> None:
    """Load a local LLM now, so a missing runtime or file is a problem answer before a stream
    starts, not an error in the middle of one (raises ``LLMUnavailable``)."""
    from assistant.llm import ChatLlamaCppJSON

    if isinstance(helper.llm, ChatLlamaCppJSON):
        helper.llm._load()
