#!/usr/bin/env bash
# The base image the Dockerfile starts FROM, in the engine DOCKER_HOST names: where the real
# public.ecr.aws/lambda/python:3.12 is absent (no registry reachable), build the stand-in
# (image/standin/build.sh) and say so. The one place that decides it: `make image`, `make tune`
# (image/build.sh), `make sam-invoke` and `make sam-api` (image/sam.py) all call this.
#
#   bash image/base.sh [LABEL]     messages on stderr, prefixed LABEL: (default image); nothing on stdout
#
# Exit 0 when the base is there (real, or the stand-in built now or earlier); otherwise the stand-in
# build's status (4: no CPython 3.12 or no SAM CLI for its emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
LABEL=${1:-image}
BASE=public.ecr.aws/lambda/python:3.12

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "$LABEL: the real base $BASE is not here (no registry reachable?): building the stand-in" >&2
  bash image/standin/build.sh >&2
  echo "$LABEL: BUILT THE STAND-IN BASE: Debian 12 with glibc 2.36, not Amazon Linux 2023 (glibc 2.34)" >&2
fi
standin=$(docker image inspect -f '{{ index .Config.Labels "org.sentiment.standin" }}' "$BASE" 2>/dev/null || true)
[ -z "$standin" ] || echo "$LABEL: base is the stand-in ($standin)" >&2
