#!/usr/bin/env bash
# make image: build the function image from the project's unchanged Dockerfile through a local engine.
#
#   bash image/build.sh [tflite|savedmodel]      -> image sentiment:<backend>
#
# Starts an engine where none answers (image/engine.sh) and stops it again if it started it (set
# KEEP_ENGINE=1 to leave it running). Where the real base image is absent it builds the stand-in
# (image/standin/build.sh) and says so: the image is then Debian-based, glibc 2.36, not AL2023's 2.34.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKEND=${1:-tflite}
case "$BACKEND" in tflite|savedmodel) ;; *) echo "BACKEND must be tflite or savedmodel, got '$BACKEND'" >&2; exit 2 ;; esac
TAG=${IMAGE_TAG:-sentiment:$BACKEND}
BASE=public.ecr.aws/lambda/python:3.12
STATE=${SENTIMENT_ENGINE_STATE:-/var/lib/sentiment-engine}

had_engine=0; [ -f "$STATE/started-by-us" ] && had_engine=1
eval "$(bash image/engine.sh start)"
if [ "$had_engine" = 0 ] && [ -f "$STATE/started-by-us" ] && [ -z "${KEEP_ENGINE:-}" ]; then
  trap 'bash image/engine.sh stop' EXIT
fi

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "image: the real base $BASE is not here (no registry reachable?): building the stand-in" >&2
  bash image/standin/build.sh
  echo "image: BUILT THE STAND-IN BASE: Debian 12 with glibc 2.36, not Amazon Linux 2023 (glibc 2.34)" >&2
fi
standin=$(docker image inspect -f '{{ index .Config.Labels "org.sentiment.standin" }}' "$BASE" 2>/dev/null || true)
[ -z "$standin" ] || echo "image: base is the stand-in ($standin)" >&2

echo "image: docker build --build-arg BACKEND=$BACKEND -t $TAG ." >&2
start=$(date +%s)
# The legacy builder: the engine has no buildx here (and the real base needs no BuildKit feature).
DOCKER_BUILDKIT=0 docker build -q --build-arg "BACKEND=$BACKEND" -t "$TAG" . >/dev/null
seconds=$(( $(date +%s) - start ))
size=$(docker image inspect -f '{{ .Size }}' "$TAG")
echo "image: built $TAG in ${seconds} s, $(( size / 1000000 )) MB" >&2
