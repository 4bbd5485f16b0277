# lstm_assets image: the code location (dagster api grpc), run and step pods, Celery workers.
#
# CPU (default):
#   docker build -t registry.example.com/lstm-assets:0.1.0 .
# GPU (CUDA base + a CUDA build of torch; pick the wheel index that matches your torch version
# at https://pytorch.org/get-started/locally/):
#   docker build -t registry.example.com/lstm-assets:0.1.0-cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# The GPU node needs the NVIDIA driver + container toolkit (or the GPU operator); torch picks
# CUDA by itself (device=auto).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/dagster_home

# The CUDA images have no Python: install the distribution's (Ubuntu 24.04: 3.12). The python
# base image already has 3.11. The project needs >= 3.11. LightGBM needs the OpenMP runtime
# (libgomp1), which slim images lack.
RUN pkgs="libgomp1"; \
    if ! python3 -c 'import sys, venv; assert sys.version_info >= (3, 11)' 2>/dev/null; then \
        pkgs="$pkgs python3 python3-venv ca-certificates"; \
    fi \
    && apt-get update \
    && apt-get install -y --no-install-recommends $pkgs \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv \
    && pip install --upgrade pip setuptools wheel

# torch first, from the chosen index (CPU wheels by default: no multi-GB CUDA download)
RUN pip install --index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}"

WORKDIR /opt/lstm_assets
# The dependencies (~1 GB) in their own layer, keyed on pyproject.toml only: a code change then
# rebuilds and pushes a layer of a few hundred kB instead of reinstalling everything. An empty
# package (and README) stand in for the code while pip resolves.
COPY pyproject.toml ./
RUN mkdir lstm_assets && touch lstm_assets/__init__.py README.md \
    && pip install -e ".[scaleout]" \
    && rm -rf lstm_assets README.md
COPY README.md workspace.yaml ./
COPY lstm_assets ./lstm_assets
COPY dagster_home_template ./dagster_home_template
COPY deploy ./deploy
# editable, so lstm_assets finds deploy/ and dagster_home_template/ beside it
RUN pip install --no-deps -e . \
    && python -c "import lstm_assets.definitions, dagster_postgres, dagster_celery, dagster_k8s, s3fs"

# A default instance for a single container; Helm/K8sRunLauncher mount their own dagster.yaml
# over it, and LSTM_INSTANCE=postgres (+ DAGSTER_PG_*) selects deploy/postgres/dagster.yaml.
# data/ is where the CLI and the resources put raw files, demo truth and the warehouse by default
# (relative to this WORKDIR), so the non-root user must own it; mount a volume there to keep it.
# Group 0 with the owner's permissions: also writable under an arbitrary UID (OpenShift).
RUN mkdir -p "$DAGSTER_HOME" /opt/lstm_assets/data \
    && cp dagster_home_template/dagster.yaml "$DAGSTER_HOME/dagster.yaml" \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin dagster \
    && chown -R 10001:0 "$DAGSTER_HOME" /opt/lstm_assets/data \
    && chmod -R g=u "$DAGSTER_HOME" /opt/lstm_assets/data
USER 10001

EXPOSE 3030
# The code server the Helm chart's user-code deployment runs (it passes the same arguments).
CMD ["dagster", "api", "grpc", "--host", "0.0.0.0", "--port", "3030", \
     "--module-name", "lstm_assets.definitions"]
