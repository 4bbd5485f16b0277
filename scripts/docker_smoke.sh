#!/usr/bin/env bash
# Build the project's image and smoke-test it (docs/deploy.md, "Images").
#
#   scripts/docker_smoke.sh [IMAGE] [-- BUILD OPTIONS...]
#
#   scripts/docker_smoke.sh                                   # docker/podman build + all checks
#   scripts/docker_smoke.sh lstm-assets:0.1.0-cuda -- \
#       --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
#   BUILD=0 RUN_OPTS="--gpus all" EXPECT_CUDA=1 scripts/docker_smoke.sh lstm-assets:0.1.0-cuda
#
# Everything after `--` goes to `<engine> build` (build args, --network, -v, ...).
# Environment:
#   ENGINE=docker|podman   default: docker when its daemon answers, else podman
#   BUILD=0                test an existing image, do not build
#   CHAIN=0                skip the demo chain (one tiny symbol, one epoch: ~1 min)
#   RUN_OPTS="..."         extra options for every `<engine> run` (e.g. --gpus all)
#   EXPECT_CUDA=1          fail unless torch sees a GPU in the container
#
# Checks: runs as uid 10001; torch + the project + the scale-out engines import; the code
# location validates; the default CMD (the code server the Helm chart runs) answers the same
# gRPC health check as the chart's readiness probe; the demo chain writes a model into data/
# as the non-root user. Containers and the volume it makes are removed; the image is kept.
set -euo pipefail

IMAGE=${1:-lstm-assets:smoke}
[[ $# -gt 0 ]] && shift
[[ ${1:-} == "--" ]] && shift
BUILD_OPTS=("$@")
read -r -a RUN_OPTS <<< "${RUN_OPTS:-}"

if [[ -z ${ENGINE:-} ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker
    elif command -v podman >/dev/null; then ENGINE=podman
    else echo "no container engine: install docker or podman" >&2; exit 2; fi
fi
cd "$(dirname "$0")/.."

SUFFIX="smoke-$$"
SERVER="lstm-$SUFFIX"
VOLUME="lstm-data-$SUFFIX"
cleanup() {
    "$ENGINE" rm -f "$SERVER" >/dev/null 2>&1 || true
    "$ENGINE" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
run() { "$ENGINE" run --rm "${RUN_OPTS[@]}" "$@"; }

if [[ ${BUILD:-1} != 0 ]]; then
    step "build $IMAGE ($ENGINE build ${BUILD_OPTS[*]} .)"
    t0=$(date +%s)
    "$ENGINE" build "${BUILD_OPTS[@]}" -t "$IMAGE" .
    echo "build time: $(( $(date +%s) - t0 )) s"
fi
size=$("$ENGINE" image inspect -f '{{.Size}}' "$IMAGE")
echo "image $IMAGE: $(( size / 1000000 )) MB"

step "non-root user"
uid=$(run "$IMAGE" id -u)
[[ $uid == 10001 ]] || { echo "runs as uid $uid, expected 10001" >&2; exit 1; }
echo "uid $uid"

step "imports and versions"
run -i -e EXPECT_CUDA="${EXPECT_CUDA:-0}" "$IMAGE" python - <<'EOF'
import os, sys

import dagster, dagster_celery, dagster_k8s, dagster_postgres, s3fs, torch  # noqa: F401

import lstm_assets.definitions  # noqa: F401

x = torch.nn.LSTM(4, 8, batch_first=True)(torch.randn(2, 5, 4))[0]
print(f"python {sys.version.split()[0]}, dagster {dagster.__version__}, torch {torch.__version__}"
      f" (cuda available: {torch.cuda.is_available()}), LSTM forward {tuple(x.shape)}")
if os.environ["EXPECT_CUDA"] == "1" and not torch.cuda.is_available():
    sys.exit("EXPECT_CUDA=1 but torch sees no GPU (CPU torch, or no --gpus / device plugin)")
EOF

step "dagster definitions validate"
run "$IMAGE" dagster definitions validate -m lstm_assets.definitions 2>&1 | grep -v Warning

step "default CMD: the code server on :3030"
"$ENGINE" run -d --name "$SERVER" "${RUN_OPTS[@]}" "$IMAGE" >/dev/null
t0=$(date +%s)
for _ in $(seq 1 60); do
    if "$ENGINE" exec "$SERVER" dagster api grpc-health-check --port 3030 >/dev/null 2>&1; then
        ok=1; echo "gRPC health check answered after $(( $(date +%s) - t0 )) s"; break
    fi
    [[ $("$ENGINE" inspect -f '{{.State.Running}}' "$SERVER") == true ]] || break
    sleep 2
done
if [[ -z ${ok:-} ]]; then
    "$ENGINE" logs "$SERVER" | tail -20
    echo "the code server did not answer" >&2; exit 1
fi
"$ENGINE" rm -f "$SERVER" >/dev/null

if [[ ${CHAIN:-1} != 0 ]]; then
    step "demo chain: one symbol, 3 years, 1 epoch, as uid 10001, data/ on a volume"
    "$ENGINE" volume create "$VOLUME" >/dev/null
    run -v "$VOLUME:/opt/lstm_assets/data" "$IMAGE" sh -c '
        set -e
        lstm-assets demo-data --symbols 1 --years 3
        lstm-assets run --symbols SYN001 --set max_epochs=1 --set bootstrap_samples=50
        test -s data/warehouse/lstm_model/SYN001.safetensors
        test -s data/warehouse/leaderboard.md
        echo "model: $(ls -l data/warehouse/lstm_model/SYN001.safetensors)"'
fi

step "all smoke tests passed for $IMAGE"
