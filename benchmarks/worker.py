"""One engine in a fresh process: ``cold`` (imports + load + first prediction), ``warm`` (throughput, memory,
labels) or ``latency`` (single-review requests)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that across fork + exec from the parent."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine")
    parser.add_argument("mode", choices=["cold", "warm", "latency"])
    parser.add_argument("--texts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    texts = json.loads(args.texts.read_text())
    sys.stdout = open(os.devnull, "w")
    from benchmarks.engines import ENGINES

    engine = ENGINES[args.engine]()
    engine.load()
    engine.predict(texts["single"][:1])
    ready = time.time()
    if args.mode == "cold":
        args.out.write_text(json.dumps({"ready": ready}))
        return 0
    if args.mode == "latency":
        for text in texts["single"][:5]:
            engine.predict([text])
        latencies = []
        for i in range(args.requests):
            text = texts["single"][i % len(texts["single"])]
            start = time.perf_counter()
            engine.predict([text])
            latencies.append((time.perf_counter() - start) * 1000)
        args.out.write_text(json.dumps({"latencies_ms": latencies, "peak_rss_mb": peak_rss_mb()}))
        return 0
    labels = []
    start = time.perf_counter()
    batch_texts = texts["agreement"]
    for i in range(0, len(batch_texts), args.batch):
        labels.extend(int(x) for x in engine.predict(batch_texts[i : i + args.batch]))
    elapsed = time.perf_counter() - start
    result = {
        "throughput_per_s": round(len(batch_texts) / elapsed, 1),
        "peak_rss_mb": peak_rss_mb(),
        "artifact_mb": engine.artifact_mb(),
        "labels": labels,
    }
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
