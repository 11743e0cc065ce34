"""Bulk scoring throughput and memory: ``python -m benchmarks.bulk [--rows 20000]``.

Writes a CSV of ``--rows`` evaluation texts (or generated ones) under benchmarks/.cache/, then scores it
in fresh processes with the bundled model: through ``local.score`` (files) and through
``app.batch.lambda_handler`` against moto's in-memory S3 (the Lambda path: S3 streaming, multipart
upload; moto keeps the objects in the same process, so its RSS includes input and output). Reports
records/s (model load excluded) and peak RSS; writes results/bulk.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.run import RESULTS, ROOT, environment, load_texts

CACHE = ROOT / "benchmarks" / ".cache"

S3_WORKER = """
import json, os, sys, time
os.environ.update({"AWS_ACCESS_KEY_ID": "moto", "AWS_SECRET_ACCESS_KEY": "moto"})  # moto takes any credentials
from moto import mock_aws
path, out = sys.argv[1], sys.argv[2]
with mock_aws():
    import boto3
    from local.invoke import LocalContext
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="bench")
    s3.put_object(Bucket="bench", Key="incoming/bench.csv", Body=open(path, "rb").read())
    import app.batch as batch
    class Context(LocalContext):
        def get_remaining_time_in_millis(self):
            return 900_000
    started = time.perf_counter()
    reply = batch.lambda_handler({"bucket": "bench", "key": "incoming/bench.csv"}, Context())
    seconds = time.perf_counter() - started
    from benchmarks.worker import peak_rss_mb
    json.dump({"seconds": seconds, "records": reply["records"], "errors": reply["errors"],
               "peak_rss_mb": peak_rss_mb()}, open(out, "w"))
"""
LOCAL_WORKER = """
import runpy, sys
from benchmarks.worker import peak_rss_mb
sys.argv = ["local.score", *sys.argv[1:]]
try:
    runpy.run_module("local.score", run_name="__main__")
finally:
    print(f"peak_rss_mb={peak_rss_mb()}", file=sys.stderr)
"""


def write_csv(rows: int) -> tuple[Path, str]:
    texts, source = load_texts(1000)
    pool = texts["single"] + texts["agreement"]
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"bulk_{rows}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for i in range(rows):
            writer.writerow([f"row-{i}", pool[i % len(pool)]])
    return path, source


def run_local(path: Path) -> dict[str, float]:
    out = CACHE / "bulk_out.jsonl"
    process = subprocess.run([sys.executable, "-c", LOCAL_WORKER, str(path), str(out)], cwd=ROOT,
                             capture_output=True, text=True, timeout=3600)
    if process.returncode != 0:
        raise RuntimeError(process.stderr[-2000:])
    lines = process.stderr.strip().splitlines()
    peak = float(lines[-1].split("=")[1])
    line = lines[-2]  # "N records (...) in T s, R records/s -> ..."
    records = int(line.split()[0])
    seconds = float(line.split(" in ")[1].split(" s,")[0])
    return {"records": records, "seconds": round(seconds, 1), "records_per_s": round(records / seconds, 1),
            "peak_rss_mb": round(peak, 1)}


def run_s3(path: Path) -> dict[str, float]:
    out = CACHE / "bulk_s3.json"
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_LOG_LEVEL": "WARNING",
           "POWERTOOLS_METRICS_DISABLED": "1"}
    process = subprocess.run([sys.executable, "-c", S3_WORKER, str(path), str(out)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=3600)
    if process.returncode != 0:
        raise RuntimeError(process.stderr[-2000:])
    result = json.loads(out.read_text())
    return {"records": result["records"], "seconds": round(result["seconds"], 1),
            "records_per_s": round(result["records"] / result["seconds"], 1),
            "peak_rss_mb": round(result["peak_rss_mb"], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bulk", description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    path, source = write_csv(args.rows)
    print(f"{args.rows} rows ({path.stat().st_size / 1e6:.1f} MB) from {source}", file=sys.stderr)
    started = time.time()
    local = run_local(path)
    s3 = run_s3(path)
    results = {"rows": args.rows, "input_mb": round(path.stat().st_size / 1e6, 2), "texts": source,
               "environment": environment(), "local_score": local, "lambda_s3_moto": s3,
               "wall_s": round(time.time() - started, 1)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bulk.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| path | records | seconds | records/s | peak RSS MB |\n|---|---|---|---|---|")
    for name, r in (("make score (files)", local), ("app.batch + S3 (moto)", s3)):
        print(f"| {name} | {r['records']} | {r['seconds']} | {r['records_per_s']} | {r['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
