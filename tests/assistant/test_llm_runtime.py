"""A llama.cpp that cannot run on this CPU is a clear LLMUnavailable, never a dead service.

The child process is real; what it runs stands in for llama.cpp's one-token probe, so these
tests run where llama-cpp-python is not installed (CI) and reproduce the SIGILL seen on an
AVX2-only AMD EPYC with a build that assumed AVX-512."""

from __future__ import annotations

import sys
import types

import pytest

from assistant import llm


@pytest.fixture
def probe(monkeypatch):
    def use(code: str) -> None:
        monkeypatch.setattr(llm, "_PROBE", code)
        llm.runtime_problem.cache_clear()

    yield use
    llm.runtime_problem.cache_clear()


def test_an_illegal_instruction_says_so_and_how_to_fix_it(probe, tmp_path):
    probe("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    problem = llm.runtime_problem(str(tmp_path / "m.gguf"))
    assert problem is not None
    assert "illegal instruction" in problem and "scripts/setup.sh" in problem


def test_a_runtime_that_answers_has_no_problem_and_is_probed_once(probe, tmp_path):
    probe("pass\n")
    assert llm.runtime_problem(str(tmp_path / "m.gguf")) is None
    assert llm.runtime_problem.cache_info().misses == 1
    assert llm.runtime_problem(str(tmp_path / "m.gguf")) is None
    assert llm.runtime_problem.cache_info().hits == 1


def test_any_other_failure_gives_its_last_line(probe, tmp_path):
    probe("raise SystemExit('ValueError: failed to load model')\n")
    problem = llm.runtime_problem(str(tmp_path / "m.gguf"))
    assert problem.startswith("cannot load") and problem.endswith("failed to load model")


def test_the_chat_model_raises_unavailable_instead_of_loading_a_dying_runtime(
        probe, tmp_path, monkeypatch):
    def never(**_):
        raise AssertionError("the runtime was loaded in process despite the failed probe")

    # Whether or not llama-cpp-python is installed here, the in-process load must not happen.
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=never))
    probe("import os, signal\nos.kill(os.getpid(), signal.SIGILL)\n")
    path = tmp_path / "m.gguf"
    path.write_bytes(b"GGUF")
    model = llm.ChatLlamaCppJSON(model_path=str(path))
    with pytest.raises(llm.LLMUnavailable, match="illegal instruction"):
        model._load()
