#!/usr/bin/env bash
# Build a stand-in for public.ecr.aws/lambda/python:3.12 where the real base cannot be pulled, and tag it
# with that name in the local engine only. What it is made of (all from this machine and its registries):
#   - a Debian 12 minbase root filesystem (mmdebstrap, from the mirror apt uses here) with the shared
#     libraries CPython links against;
#   - this machine's CPython 3.12 (pyenv) as /var/lang, as in the real image;
#   - awslambdaric (PyPI) in /var/runtime and the runtime interface emulator shipped inside the
#     aws-sam-cli wheel at /usr/local/bin/aws-lambda-rie;
#   - the real image's ENV, WORKDIR and ENTRYPOINT; then a local-only CA-bundle layer (ca.Dockerfile).
# It differs from the real base: Debian userland and glibc 2.36, not Amazon Linux 2023's glibc 2.34.
#
#   bash image/standin/build.sh     (needs DOCKER_HOST to answer; root for mmdebstrap)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TAG=public.ecr.aws/lambda/python:3.12
BASE_TAG=sentiment-standin-base:3.12
PY312=${PY312:-$(command -v pyenv >/dev/null && pyenv prefix 3.12.1 2>/dev/null || true)}
PY312=${PY312:-/root/.pyenv/versions/3.12.1}
AWSLAMBDARIC_VERSION=3.1.1
SUITE=bookworm
PACKAGES=ca-certificates,libssl3,libffi8,libsqlite3-0,zlib1g,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libuuid1,libgdbm6,libexpat1,tzdata
RIE=$ROOT/.venv-sam/lib/python3*/site-packages/samcli/local/rapid/aws-lambda-rie-x86_64

say() { echo "stand-in: $*" >&2; }

[ -x "$PY312/bin/python3.12" ] || { say "CPython 3.12 not found at $PY312 (set PY312): cannot build the stand-in"; exit 4; }
# shellcheck disable=SC2086
ls $RIE >/dev/null 2>&1 || { say "the emulator comes from aws-sam-cli: run make .venv-sam first"; exit 4; }
command -v mmdebstrap >/dev/null || { say "installing mmdebstrap (apt-get)"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >&2; }

WORK=$(mktemp -d /tmp/sentiment-standin.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
ROOTFS=$WORK/rootfs
say "Debian $SUITE minbase root filesystem (mmdebstrap) ..."
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" --dpkgopt='path-exclude=/usr/share/{doc,man,locale}/*' \
  "$SUITE" "$ROOTFS" /etc/apt/sources.list.d/debian.sources >&2

say "CPython $("$PY312/bin/python3.12" -c 'import platform; print(platform.python_version())') from $PY312 -> /var/lang"
mkdir -p "$ROOTFS/var/lang" "$ROOTFS/var/runtime" "$ROOTFS/var/task" "$ROOTFS/opt"
# The stdlib, its extension modules and pip; not the test suite, the static library or other site-packages.
tar -C "$PY312" --exclude='lib/python3.12/test' --exclude='lib/python3.12/config-3.12-*' \
  --exclude='lib/python3.12/site-packages/*' --exclude='__pycache__' --exclude='lib/python3.12/idlelib' \
  --exclude='lib/python3.12/tkinter' --exclude='lib/python3.12/turtledemo' -cf - bin include lib \
  | tar -C "$ROOTFS/var/lang" -xf -
# pip, as the real image has it, installed fresh (the source tree's console scripts name pyenv's path).
rm -f "$ROOTFS"/var/lang/bin/pip* "$ROOTFS"/var/lang/bin/idle* "$ROOTFS"/var/lang/bin/pydoc* "$ROOTFS"/var/lang/bin/2to3*
"$PY312/bin/python3.12" -m pip install -q --no-deps --target "$ROOTFS/var/lang/lib/python3.12/site-packages" \
  "pip==$("$PY312/bin/python3.12" -m pip --version | cut -d' ' -f2)" >&2
printf '#!/var/lang/bin/python3.12\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n' \
  >"$ROOTFS/var/lang/bin/pip"
chmod 755 "$ROOTFS/var/lang/bin/pip"; ln -sf pip "$ROOTFS/var/lang/bin/pip3"; ln -sf pip "$ROOTFS/var/lang/bin/pip3.12"
# shellcheck disable=SC2086
"$PY312/bin/python3.12" -m pip install -q --target "$ROOTFS/var/runtime" "awslambdaric==$AWSLAMBDARIC_VERSION" >&2
install -m 755 "$HERE/bootstrap" "$ROOTFS/var/runtime/bootstrap"
install -m 755 "$HERE/lambda-entrypoint.sh" "$ROOTFS/lambda-entrypoint.sh"
# shellcheck disable=SC2086
install -m 755 $RIE "$ROOTFS/usr/local/bin/aws-lambda-rie"
ln -s /var/lang/bin/python3.12 "$ROOTFS/usr/local/bin/python3.12" 2>/dev/null || true
echo "stand-in for $TAG built $(date -u +%FT%TZ): Debian $SUITE, glibc $(ldd --version | head -1 | awk '{print $NF}')" \
  >"$ROOTFS/etc/sentiment-standin"

say "importing as $BASE_TAG ..."
tar -C "$ROOTFS" -cf - . | docker import \
  --change 'ENV LANG=en_US.UTF-8 TZ=:/etc/localtime PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin' \
  --change 'ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib' \
  --change 'ENV LAMBDA_TASK_ROOT=/var/task LAMBDA_RUNTIME_DIR=/var/runtime' \
  --change 'WORKDIR /var/task' --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
  --change 'LABEL org.sentiment.standin="Debian 12, glibc 2.36: a stand-in, not Amazon Linux 2023"' \
  - "$BASE_TAG" >/dev/null
cp /etc/ssl/certs/ca-certificates.crt "$WORK/ca-certificates.crt"
DOCKER_BUILDKIT=0 docker build -q -f "$HERE/ca.Dockerfile" -t "$TAG" "$WORK" >/dev/null
say "tagged $TAG (local engine only)"
