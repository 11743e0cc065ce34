#!/usr/bin/env bash
# make image: build the function image from the project's unchanged Dockerfile through a local engine.
#
#   bash image/build.sh [tflite|savedmodel]      -> image sentiment:<backend>
#
# Starts an engine where none answers (image/engine.sh) and stops it again if it started it (set
# KEEP_ENGINE=1 to leave it running). Where the real base image is absent it builds the stand-in
# (image/base.sh, shared with `make sam-invoke` and `make sam-api`) and says so: the image is then
# Debian-based, glibc 2.36, not AL2023's 2.34.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-tflite}
case "$BACKEND" in tflite|savedmodel) ;; *) echo "BACKEND must be tflite or savedmodel, got '$BACKEND'" >&2; exit 2 ;; esac
TAG=${IMAGE_TAG:-sentiment:$BACKEND}
STATE=${SENTIMENT_ENGINE_STATE:-/var/lib/sentiment-engine}

had_engine=0; [ -f "$STATE/started-by-us" ] && had_engine=1
eval "$(bash image/engine.sh start)"
if [ "$had_engine" = 0 ] && [ -f "$STATE/started-by-us" ] && [ -z "${KEEP_ENGINE:-}" ]; then
  trap 'bash image/engine.sh stop' EXIT
fi

bash image/base.sh image

echo "image: docker build --build-arg BACKEND=$BACKEND -t $TAG ." >&2
start=$(date +%s)
# The legacy builder: the engine has no buildx here (and the real base needs no BuildKit feature).
DOCKER_BUILDKIT=0 docker build -q --build-arg "BACKEND=$BACKEND" -t "$TAG" . >/dev/null
seconds=$(( $(date +%s) - start ))
size=$(docker image inspect -f '{{ .Size }}' "$TAG")
echo "image: built $TAG in ${seconds} s, $(( size / 1000000 )) MB" >&2
