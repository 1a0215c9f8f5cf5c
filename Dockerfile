# Retention Assistant, installed the same way as scripts/setup.sh does (CPU build of torch).
# Build: docker build -t retention-assistant .   Run: docker run --rm retention-assistant demo
FROM python:3.11-slim

# Point this at a PyTorch CPU wheel index when building outside the project's own machines:
# from plain PyPI, torch==2.13.0 on Linux x86_64 is the multi-GB CUDA build.
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    RETENTION_HOME=/data

RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY finetune ./finetune
COPY assistant ./assistant
COPY service ./service
COPY prompts ./prompts
RUN pip install .

RUN useradd --create-home app && mkdir -p /data && chown app /data
USER app
VOLUME ["/data"]
ENTRYPOINT ["retention"]
CMD ["demo"]
