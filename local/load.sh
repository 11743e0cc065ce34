#!/usr/bin/env bash
# make load: `make serve` under wrk on 127.0.0.1 (bounded: DURATION seconds, CONNECTIONS connections).
set -euo pipefail
PY=${PY:-.venv/bin/python}
PORT=${PORT:-3055}
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-8}
command -v wrk >/dev/null || { echo "error: wrk is not installed (apt-get install wrk)" >&2; exit 2; }
$PY -m local.serve --port "$PORT" 2>/tmp/sentiment-serve.log &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
echo "model: $(curl -s http://127.0.0.1:$PORT/health)"
echo "wrk: 2 threads, $CONNECTIONS connections, ${DURATION}s, POST /predict (single and 3-review batch alternating)"
wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s local/wrk_predict.lua "http://127.0.0.1:$PORT"
