"""The `openai` and `small` backends for real: the openai backend against llama-cpp-python's own
OpenAI-compatible server (`python -m llama_cpp.server`, started here on loopback on the packaged
SmolLM2 GGUF), the small backend in process. Whatever they write is shown only after the checks.

Needs the LLM runtime (`RETENTION_WITH_LLM=1 bash scripts/setup.sh --dev`); skips without it.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time

import httpx
import pytest

from assistant.chat import Turn, chat
from assistant.checks import check_explanation
from assistant.explain import Assistant
from assistant.llm import LLMConfig, LLMUnavailable, chat_model, small_model_path
from assistant.playbook import Playbook
from assistant.scoring import Scorer
from finetune.artifacts import TrainedModel

pytestmark = [pytest.mark.slow, pytest.mark.llm]


def _runtime() -> None:
    for module in ("llama_cpp", "starlette_context"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (RETENTION_WITH_LLM=1 bash scripts/setup.sh "
                        "--dev installs the LLM runtime)")


@pytest.fixture(scope="module")
def helper_parts(trained_model, synthetic):
    scorer = Scorer(TrainedModel.load(trained_model))
    events = synthetic[0]
    cid = scorer.score(events).sort_values("probability")["customer_id"].iloc[-1]
    return scorer, events, str(cid)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _runtime()
    try:
        model = small_model_path()
    except LLMUnavailable as exc:
        pytest.skip(str(exc))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    out = log.open("wb")  # a file, not a pipe: llama.cpp logs enough to fill a pipe and block
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"],
        stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(240):
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("llama_cpp.server did not answer within 120 s")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        out.close()


def _shown_passes(helper, scorer, events, cid, x) -> None:
    assert check_explanation(x, helper.playbook, scorer.customer(events, cid).facts) == []
    assert x.fallback == x.backend.endswith("->none")


def test_openai_backend_against_a_real_openai_compatible_server(server, helper_parts):
    scorer, events, cid = helper_parts
    llm = chat_model(LLMConfig(backend="openai", openai_base_url=server, openai_model="smollm2",
                               max_tokens=256, timeout_s=120))
    helper = Assistant(scorer, Playbook.load(), llm=llm, backend="openai")
    x = helper.explain(events, cid)
    assert x.backend in ("openai", "openai->none") and x.attempts >= 1
    _shown_passes(helper, scorer, events, cid, x)
    # Chat streams through the same server, token by token, and is checked when complete.
    items = list(chat(helper, events, cid, [Turn("user", "Why might they leave?")]))
    assert items[-1].kind == "done" and items[-1].data["backend"] == "openai"
    assert any(i.kind == "token" for i in items)


def test_small_backend_in_process(helper_parts):
    _runtime()
    scorer, events, cid = helper_parts
    try:
        llm = chat_model(LLMConfig(backend="small", max_tokens=256))
    except LLMUnavailable as exc:
        pytest.skip(str(exc))
    helper = Assistant(scorer, Playbook.load(), llm=llm, backend="small")
    for lang in ("en", "zh"):
        x = helper.explain(events, cid, lang=lang)
        assert x.backend in ("small", "small->none") and x.language == lang
        _shown_passes(helper, scorer, events, cid, x)
