"""make tune: choose the function's MemorySize before deploying, by running the built image under Lambda's quotas.

For each memory size N the image runs in a container limited to what Lambda gives a function of N MB:
``--cpus N/1769`` (Lambda allocates CPU in proportion to memory, one vCPU at 1,769 MB) and ``--memory Nm``.
Through the image's own runtime interface emulator it measures the cold start (``docker run`` to the first
response), p50 / p99 of single-review requests, the throughput of 32-review requests, and the cost per
million single-review requests. Writes benchmarks/results/tuning.json and tuning.png.

Under the 1-vCPU quota it also runs our handler, our tokenizer + model without the handler, and the
``onnxruntime-int8`` peer of ``make bench`` in process (benchmarks/worker.py, in a container with the same
quota) on the same texts, to compare p50s.

Prices (AWS Lambda, x86_64, on demand, us-east-1; aws.amazon.com/lambda/pricing): $0.0000166667 per GB-second
and $0.20 per million requests; duration billed per millisecond.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.run import PRICE_GB_S, PRICE_REQUEST, RESULTS, ROOT, cpu_info, load_texts

MEMORY_SIZES = (512, 1024, 1769, 2048, 3008)
MB_PER_VCPU = 1769
INVOKE = "/2015-03-31/functions/function/invocations"
DOCKER = shutil.which("docker") or "docker"
# The recommendation: the cheapest size whose p99 and cold start are each within this factor of the best measured.
TOLERANCE = 1.25


def cost_per_million(p50_ms: float, memory_mb: int) -> float:
    """USD per million single-review requests: billed ms (rounded up) x GB x price + the request price."""
    billed_s = max(1, -(-p50_ms // 1)) / 1000
    return round(1e6 * (memory_mb / 1024 * billed_s * PRICE_GB_S + PRICE_REQUEST), 4)


def docker(*args: str, timeout: float = 300) -> str:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=True, timeout=timeout).stdout.strip()


class Emulated:
    """One container of the image under a memory size's quota, invoked through its emulator on 127.0.0.1."""

    def __init__(self, image: str, memory_mb: int, env: dict[str, str] | None = None) -> None:
        self.memory_mb = memory_mb
        self.event = json.loads((ROOT / "events" / "predict_single.json").read_text())
        env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        self.started = time.perf_counter()
        self.id = docker("run", "-d", "--rm", f"--cpus={memory_mb / MB_PER_VCPU:.3f}", f"--memory={memory_mb}m",
                         f"--memory-swap={memory_mb}m", "-p", "127.0.0.1::8080",
                         "-e", f"AWS_LAMBDA_FUNCTION_MEMORY_SIZE={memory_mb}", *env_args, image)
        self.port = int(docker("port", self.id, "8080/tcp").splitlines()[0].rsplit(":", 1)[1])

    def invoke(self, body: dict, timeout: float = 120) -> tuple[float, dict]:
        """(seconds, proxy response) of one invocation."""
        self.event["body"] = json.dumps(body)
        data = json.dumps(self.event)
        start = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("POST", INVOKE, body=data, headers={"Content-Type": "application/json"})
            reply = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        elapsed = time.perf_counter() - start
        if reply.get("statusCode") != 200:
            raise RuntimeError(f"{self.memory_mb} MB: the function answered {str(reply)[:300]}")
        return elapsed, reply

    def first_response(self, text: str, timeout: float = 180) -> float:
        """Seconds from `docker run` to the first answered request (the emulator may not listen yet)."""
        deadline = self.started + timeout
        while True:
            try:
                self.invoke({"text": text})
                return time.perf_counter() - self.started
            except (ConnectionError, http.client.HTTPException, OSError):
                if time.perf_counter() > deadline:
                    raise
                time.sleep(0.02)

    def peak_memory_mb(self) -> float | None:
        """The container's peak memory (cgroup v1 or v2), None where the engine does not expose it."""
        for path in ("/sys/fs/cgroup/memory/memory.max_usage_in_bytes", "/sys/fs/cgroup/memory.peak"):
            try:
                return round(int(docker("exec", self.id, "cat", path)) / 2**20, 1)
            except (subprocess.CalledProcessError, ValueError):
                continue
        return None

    def stop(self) -> None:
        subprocess.run([DOCKER, "rm", "-f", self.id], capture_output=True, check=False)


def measure(image: str, memory_mb: int, texts: dict[str, list[str]], requests: int, batches: int,
            env: dict[str, str] | None = None) -> dict:
    """One fresh container: its cold start, `requests` single-review latencies, `batches` requests of 32."""
    box = Emulated(image, memory_mb, env)
    try:
        cold = box.first_response(texts["single"][0])
        for text in texts["single"][1:6]:  # warm-up, as a warm container has served a few requests
            box.invoke({"text": text})
        latencies = [box.invoke({"text": texts["single"][i % len(texts["single"])]})[0] * 1000 for i in range(requests)]
        batch = texts["agreement"]
        start = time.perf_counter()
        for i in range(batches):
            box.invoke({"texts": batch[i * 32: (i + 1) * 32]})
        batch_s = time.perf_counter() - start
        peak = box.peak_memory_mb()
    finally:
        box.stop()
    return {"cold_start_s": cold, "latencies_ms": latencies, "batch_texts": batches * 32, "batch_s": batch_s,
            "peak_memory_mb": peak}


def summarise(memory_mb: int, samples: list[dict]) -> dict:
    """One row of tuning.json from a memory size's rounds: cold start and throughput as medians over the rounds,
    p50 / p99 over every round's requests pooled."""
    latencies = sorted(x for s in samples for x in s["latencies_ms"])
    p50 = statistics.median(latencies)
    peaks = [s["peak_memory_mb"] for s in samples if s["peak_memory_mb"]]
    return {"memory_mb": memory_mb, "cold_start_s": round(statistics.median(s["cold_start_s"] for s in samples), 3),
            "p50_ms": round(p50, 2), "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
            "throughput_per_s": round(statistics.median(s["batch_texts"] / s["batch_s"] for s in samples), 1),
            "cost_per_million_usd": cost_per_million(p50, memory_mb), "vcpus": round(memory_mb / MB_PER_VCPU, 3),
            "peak_memory_mb": max(peaks) if peaks else None, "rounds": len(samples),
            "cold_starts_s": [round(s["cold_start_s"], 3) for s in samples]}


def recommend(rows: list[dict]) -> dict:
    best_p99 = min(r["p99_ms"] for r in rows)
    best_cold = min(r["cold_start_s"] for r in rows)
    fits = [r for r in rows if r["p99_ms"] <= TOLERANCE * best_p99 and r["cold_start_s"] <= TOLERANCE * best_cold]
    chosen = min(fits, key=lambda r: (r["cost_per_million_usd"], r["memory_mb"]))
    return {"memory_mb": chosen["memory_mb"],
            "rule": f"the cheapest size whose p99 and cold start are each within {TOLERANCE}x of the best measured "
                    f"(best p99 {best_p99} ms, best cold start {best_cold} s)"}


def in_process_peers(texts_file: Path, quota_cpus: float, runs: list[tuple[str, str, dict[str, str]]],
                     requests: int) -> dict:
    """benchmarks/worker.py latency runs in containers limited to quota_cpus, this checkout and virtualenv
    mounted read-only (the stand-in base is Debian like this machine, so the virtualenv's interpreter runs)."""
    base = "sentiment-standin-base:3.12"
    if subprocess.run([DOCKER, "image", "inspect", base], capture_output=True, check=False).returncode != 0:
        return {"skipped": f"{base} is not in the engine: the peer comparison runs on the stand-in's Debian userland"}
    python = Path(os.path.realpath(ROOT / ".venv" / "bin" / "python"))
    prefix = Path(*python.parts[: python.parts.index("versions") + 2]) if "versions" in python.parts else python.parent.parent
    out_dir = Path(tempfile.mkdtemp(prefix="tune-peers-"))
    results = {}
    try:
        for label, engine, env in runs:
            env_args = [a for k, v in {"TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1", **env}.items()
                        for a in ("-e", f"{k}={v}")]
            docker("run", "--rm", "--network", "none", f"--cpus={quota_cpus:.3f}", "-v", f"{prefix}:{prefix}:ro",
                   "-v", f"{ROOT}:{ROOT}:ro", "-v", f"{texts_file}:{texts_file}:ro", "-v", f"{out_dir}:{out_dir}",
                   "-w", str(ROOT), "--entrypoint", str(ROOT / ".venv" / "bin" / "python"), *env_args, base,
                   "-m", "benchmarks.worker", engine, "latency", "--texts", str(texts_file), "--out",
                   str(out_dir / f"{label}.json"), "--requests", str(requests), timeout=900)
            latencies = sorted(json.loads((out_dir / f"{label}.json").read_text())["latencies_ms"])
            results[label] = {"engine": engine, "env": env, "p50_ms": round(statistics.median(latencies), 3),
                              "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3)}
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    return results


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["memory_sizes"]
    sizes = [r["memory_mb"] for r in rows]
    panels = [("cold_start_s", "cold start (s)"), ("p50_ms", "p50, 1 review (ms)"), ("p99_ms", "p99, 1 review (ms)"),
              ("throughput_per_s", "reviews/s (requests of 32)"), ("cost_per_million_usd", "$ per 1M requests")]
    fig, axes = plt.subplots(1, len(panels), figsize=(18, 3.6))
    chosen = result["recommended"]["memory_mb"]
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(sizes, [r[key] for r in rows], marker="o")
        ax.axvline(chosen, color="tab:green", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("MemorySize (MB)")
        ax.set_xticks(sizes)
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    fig.suptitle(f"make tune: the image under Lambda's CPU/memory quotas, {result['machine']['date']} "
                 f"({result['machine']['cpu']}); dashed: recommended {chosen} MB")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine() -> dict:
    base = subprocess.run([DOCKER, "image", "inspect", "-f", '{{ index .Config.Labels "org.sentiment.standin" }}',
                           "public.ecr.aws/lambda/python:3.12"], capture_output=True, text=True, check=False).stdout
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), **cpu_info(), "cpus": len(os.sched_getaffinity(0)),
            "machine": platform.machine(), "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
            "base_image": base.strip() if base.strip() not in ("", "<no value>") else "public.ecr.aws/lambda/python:3.12"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="sentiment:tflite")
    parser.add_argument("--memory", type=int, nargs="*", default=list(MEMORY_SIZES))
    parser.add_argument("--rounds", type=int, default=3, help="fresh containers (cold starts) per configuration")
    parser.add_argument("--requests", type=int, default=100, help="single-review requests per round")
    parser.add_argument("--batches", type=int, default=4, help="requests of 32 reviews per round")
    parser.add_argument("--peer-requests", type=int, default=300)
    parser.add_argument("--no-peers", action="store_true", help="skip the onnxruntime-int8 comparison")
    parser.add_argument("--no-thread-sweep", action="store_true", help="skip the MODEL_NUM_THREADS=1 sweep")
    parser.add_argument("--out", type=Path, default=RESULTS / "tuning.json")
    args = parser.parse_args(argv)
    texts, source = load_texts(32 * args.batches)
    from image.sam import engine

    with engine():
        docker("image", "inspect", args.image)
        load_before = [round(x, 2) for x in os.getloadavg()]
        # Rounds interleave the configurations (and rotate their order), so load from elsewhere on the machine
        # spreads over all of them instead of landing on one.
        configs = [(m, {}) for m in args.memory]
        if not args.no_thread_sweep:
            # The interpreter's threads default to the CPUs the process sees (2 here), not to the quota: the same
            # sizes with MODEL_NUM_THREADS=1 show whether the second thread is worth anything under the quota.
            configs += [(m, {"MODEL_NUM_THREADS": "1"}) for m in args.memory]
        samples: dict[int, list[dict]] = {i: [] for i in range(len(configs))}
        for round_ in range(args.rounds):
            shift = round_ % len(configs)
            for index in list(range(len(configs)))[shift:] + list(range(len(configs)))[:shift]:
                memory_mb, env = configs[index]
                samples[index].append(measure(args.image, memory_mb, texts, args.requests, args.batches, env))
                print(f"round {round_ + 1}/{args.rounds}: {memory_mb} MB {env or ''} cold start "
                      f"{samples[index][-1]['cold_start_s']:.2f} s", flush=True)
        rows = [summarise(m, samples[i]) for i, (m, env) in enumerate(configs) if not env]
        one_thread = [summarise(m, samples[i]) for i, (m, env) in enumerate(configs) if env]
        result = {"memory_sizes": rows, "recommended": recommend(rows),
                  "machine": {**machine(), "load_average_before_1_5_15": load_before},
                  "texts": source, "prices": {"per_gb_s_usd": PRICE_GB_S, "per_request_usd": PRICE_REQUEST,
                                              "region": "us-east-1", "architecture": "x86_64"},
                  "notes": ["cpus = memory_mb / 1769 (docker --cpus, a CFS quota), memory = memory_mb (--memory)",
                            "latency is client-side through the image's emulator on 127.0.0.1 (HTTP + JSON included)",
                            f"{args.rounds} rounds of a fresh container per configuration, interleaved; cold start and "
                            "throughput: median over rounds; p50/p99: over all rounds' requests pooled",
                            "cost_per_million_usd: p50 billed (rounded up to 1 ms) x GB x price + request price"]}
        if one_thread:
            result["memory_sizes_model_num_threads_1"] = one_thread
        if not args.no_peers:
            from benchmarks.engines import prepare

            prepare()
            with tempfile.NamedTemporaryFile("w", suffix=".tmp", delete=False, dir=RESULTS) as handle:
                json.dump(texts, handle)
            texts_file = Path(handle.name)
            try:
                # Our handler with its default threads and with one, the same tokenizer + model without the handler
                # (like for like with the peer), and the peer with its library's defaults.
                peers = in_process_peers(texts_file, 1.0, [
                    ("tflite", "tflite", {}), ("tflite-1-thread", "tflite", {"MODEL_NUM_THREADS": "1"}),
                    ("tflite-model-only", "tflite-model-only", {}),
                    ("onnxruntime-int8", "onnxruntime-int8", {})], args.peer_requests)
            finally:
                texts_file.unlink()
            if "tflite" in peers:
                peers["p50_tflite_over_onnxruntime_int8"] = round(
                    peers["tflite"]["p50_ms"] / peers["onnxruntime-int8"]["p50_ms"], 3)
                peers["p50_tflite_1_thread_over_onnxruntime_int8"] = round(
                    peers["tflite-1-thread"]["p50_ms"] / peers["onnxruntime-int8"]["p50_ms"], 3)
                peers["p50_tflite_model_only_over_onnxruntime_int8"] = round(
                    peers["tflite-model-only"]["p50_ms"] / peers["onnxruntime-int8"]["p50_ms"], 3)
            result["one_vcpu_in_process"] = {"quota_cpus": 1.0, **peers}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    chart(result, args.out.with_suffix(".png"))
    print(f"recommended MemorySize: {result['recommended']['memory_mb']} MB ({result['recommended']['rule']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
