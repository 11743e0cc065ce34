"""Run every engine on the same weights and texts; write results/latest.json, a table and a chart."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from benchmarks.engines import ARTIFACTS, ENGINES, ROOT, prepare

RESULTS = ROOT / "benchmarks" / "results"
SHARED_EVAL = ROOT.parent / "shared" / "data" / "eval"
# AWS Lambda x86_64 on-demand prices (us-east-1, 2026): per GB-second and per request.
PRICE_GB_S = 0.0000166667
PRICE_REQUEST = 0.20 / 1e6


def load_texts(n_agreement: int, seed: int = 0) -> tuple[dict[str, list[str]], str]:
    """Evaluation texts from ../shared/data/eval, or generated ones where that is absent."""
    rng = random.Random(seed)
    if SHARED_EVAL.is_dir():
        from training.data import load_examples

        texts = load_examples([SHARED_EVAL]).texts
        source = f"{len(texts)} texts of ../shared/data/eval"
    else:
        words = ["great", "awful", "fine", "broken", "lovely", "useless", "solid", "cheap", "fast", "slow"]
        texts = [f"The {rng.choice(['kettle', 'app', 'lamp', 'case'])} is {rng.choice(words)} and "
                 f"{rng.choice(words)}. " * rng.randint(1, 6) for _ in range(n_agreement + 200)]
        source = "generated texts (../shared/data/eval absent)"
    # The API takes up to 5,000 characters per text; the model reads ~600 of them anyway.
    texts = [t[:2000] for t in texts]
    rng.shuffle(texts)
    return {"single": texts[:200], "agreement": texts[200 : 200 + n_agreement]}, source


def run_worker(engine: str, mode: str, texts_file: Path, timeout: int = 900) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    started = time.time()
    process = subprocess.run([sys.executable, "-m", "benchmarks.worker", engine, mode, "--texts", str(texts_file),
                              "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if process.returncode != 0:
        raise RuntimeError(f"{engine} {mode} failed:\n{process.stderr[-3000:]}")
    result = json.loads(out.read_text())
    out.unlink()
    if mode == "cold":
        return {"cold_start_s": result["ready"] - started}
    return result


# The CPU's widest int8 dot-product instructions, best first: they pick LiteRT's (XNNPACK) and ONNX Runtime's
# (MLAS) int8 matrix kernels, and so decide their p50 ratio (docs/benchmark.md#the-int8-kernels-decide-the-ratio).
INT8_DOT_PRODUCT = (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"),
                    ("avx512bw", "AVX512BW"), ("avx2", "AVX2"), ("i8mm", "Arm I8MM"), ("asimddp", "Arm DotProd"))


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """The CPU's model name and its best int8 dot-product instruction set (``INT8_DOT_PRODUCT``)."""
    text = path.read_text(errors="replace") if path.is_file() else ""
    name = re.search(r"^(?:model name|Model)\s*:\s*(.+)$", text, re.M)
    flags_line = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    best = next((label for flag, label in INT8_DOT_PRODUCT if flag in flags), "unknown")
    return {"cpu": name.group(1).strip() if name else "", "int8_dot_product": best}


def environment() -> dict:
    versions = {}
    for package in ("ai-edge-litert", "tensorflow-cpu", "torch", "transformers", "onnxruntime", "tokenizers",
                    "aws-lambda-powertools"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.machine(), **cpu_info(),
            "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(), "versions": versions,
            "threads": "library defaults: every engine may use all CPUs of the process "
                       "(LiteRT num_threads = CPUs, TF/PyTorch/ORT intra-op pools = CPUs)"}


def latency_summary(rounds: list[list[float]]) -> dict:
    """p50 / p99 over every round's requests pooled, and each round's own p50 (to show the spread)."""
    pooled = sorted(x for latencies in rounds for x in latencies)
    return {"p50_ms": round(statistics.median(pooled), 2),
            "p99_ms": round(pooled[min(len(pooled) - 1, int(len(pooled) * 0.99))], 2),
            "p50_rounds_ms": [round(statistics.median(latencies), 2) for latencies in rounds]}


def template_memory_mb() -> int:
    text = (ROOT / "template.yaml").read_text()
    return int(re.search(r"MemorySize:\s*\n\s*Type: Number\s*\n\s*Default: (\d+)", text).group(1))


def lambda_cost(p50_ms: float, memory_mb: int) -> float:
    """USD per million single-review requests: billed duration x memory x price + request price."""
    return round(1e6 * (memory_mb / 1024 * max(1.0, round(p50_ms)) / 1000 * PRICE_GB_S + PRICE_REQUEST), 2)


def markdown(results: dict) -> str:
    rows = ["| engine | cold start s | p50 ms | p99 ms | texts/s (batch 32) | peak RSS MB | artifact MB | agreement | "
            "$ / 1M requests |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results["engines"].items():
        rows.append(f"| {name} | {r['cold_start_s']:.2f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                    f"{r['throughput_per_s']:.0f} | {r['peak_rss_mb']:.0f} | {r['artifact_mb']:.0f} | "
                    f"{r['agreement']:.4f} | {r['cost_per_million_usd']:.2f} |")
    return "\n".join(rows)


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results["engines"])
    panels = [("cold_start_s", "cold start (s)"), ("p50_ms", "p50 latency, 1 review (ms)"),
              ("throughput_per_s", "throughput (texts/s)"), ("peak_rss_mb", "peak RSS (MB)")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (key, title) in zip(axes, panels, strict=True):
        values = [results["engines"][n][key] for n in names]
        bars = ax.barh(names, values, color=["tab:green" if n == "tflite" else "tab:gray" for n in names])
        ax.bar_label(bars, fmt="%.3g", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
    fig.suptitle(f"make bench, {results['environment']['date']}, {results['environment']['cpus']} CPUs")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer cold starts and texts; same schema")
    parser.add_argument("--engines", nargs="*", default=list(ENGINES), choices=list(ENGINES))
    args = parser.parse_args(argv)
    if not (ARTIFACTS / "pytorch" / "config.json").exists():
        print(f"error: {ARTIFACTS}/pytorch/ is missing; the benchmark needs the bundled weights", file=sys.stderr)
        return 2
    cold_runs, n_agreement, latency_rounds = (3, 1000, 2) if args.quick else (5, 2000, 5)
    print("preparing peer artifacts (transformers-tf weights, ONNX int8) ...", file=sys.stderr)
    prepare()
    texts, source = load_texts(n_agreement)
    RESULTS.mkdir(parents=True, exist_ok=True)
    texts_file = RESULTS / "texts.tmp"
    texts_file.write_text(json.dumps(texts))
    memory = template_memory_mb()
    engines: dict[str, dict] = {}
    order = ["transformers-pt"] + [e for e in args.engines if e != "transformers-pt"]
    try:
        for name in order:
            print(f"{name}: {cold_runs} cold starts ...", file=sys.stderr)
            colds = [run_worker(name, "cold", texts_file)["cold_start_s"] for _ in range(cold_runs)]
            print(f"{name}: warm measurements ...", file=sys.stderr)
            warm = run_worker(name, "warm", texts_file)
            engines[name] = {"cold_start_s": round(statistics.median(colds), 3), "cold_start_runs_s":
                             [round(c, 3) for c in colds], **warm}
        # Single-review latency in rounds interleaved across engines (A B C .. A B C ..): this shared
        # machine's speed drifts over minutes, and every engine's p50 should see the same drift.
        rounds: dict[str, list[list[float]]] = {name: [] for name in order}
        for round_ in range(1, latency_rounds + 1):
            for name in order:
                print(f"{name}: latency round {round_} of {latency_rounds} ...", file=sys.stderr)
                latency = run_worker(name, "latency", texts_file)
                rounds[name].append(latency["latencies_ms"])
                engines[name]["peak_rss_mb"] = max(engines[name]["peak_rss_mb"], latency["peak_rss_mb"])
    finally:
        texts_file.unlink(missing_ok=True)
    for name, result in engines.items():
        result.update(latency_summary(rounds[name]))
    reference = engines["transformers-pt"]["labels"]
    for result in engines.values():
        labels = result.pop("labels")
        result["agreement"] = round(sum(a == b for a, b in zip(labels, reference, strict=True)) / len(reference), 4)
        result["cost_per_million_usd"] = lambda_cost(result["p50_ms"], memory)
    engines = {name: engines[name] for name in ENGINES if name in engines}
    tflite, tf, ort = engines.get("tflite"), engines.get("transformers-tf"), engines.get("onnxruntime-int8")
    ratios = {}
    if tflite and tf:
        ratios["cold_start_tflite_over_transformers_tf"] = round(tflite["cold_start_s"] / tf["cold_start_s"], 3)
        ratios["peak_rss_tflite_over_transformers_tf"] = round(tflite["peak_rss_mb"] / tf["peak_rss_mb"], 3)
    if tflite and ort:
        ratios["p50_tflite_over_onnxruntime_int8"] = round(tflite["p50_ms"] / ort["p50_ms"], 3)
        ratios["throughput_tflite_over_onnxruntime_int8"] = round(tflite["throughput_per_s"] / ort["throughput_per_s"], 3)
    diagnostics = {}
    model_only = engines.get("tflite-model-only")
    if model_only and ort:  # like for like: tokenizer + model, no handler, on both sides
        diagnostics["p50_tflite_model_only_over_onnxruntime_int8"] = round(model_only["p50_ms"] / ort["p50_ms"], 3)
    if model_only and tflite:
        diagnostics["handler_p50_overhead_ms"] = round(tflite["p50_ms"] - model_only["p50_ms"], 2)
    binary = engines.get("tflite-binary")
    if binary and tflite:  # the four-way fields' cost: the same weights and handler, without and with them
        ratios["p50_four_way_over_binary"] = round(tflite["p50_ms"] / binary["p50_ms"], 3)
    if binary and engines.get("tflite-sentences"):
        ratios["p50_sentences_over_binary"] = round(engines["tflite-sentences"]["p50_ms"] / binary["p50_ms"], 3)
    results = {"quick": args.quick, "environment": environment(), "texts": source,
               "n_single_requests": 200, "latency_rounds": latency_rounds,
               "n_agreement_texts": n_agreement, "reference": "transformers-pt (PyTorch fp32)",
               "lambda_memory_mb": memory, "price_per_gb_s": PRICE_GB_S, "price_per_request": PRICE_REQUEST,
               "engines": engines, "ratios": ratios, "diagnostics": diagnostics}
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    chart(results, RESULTS / "latest.png")
    print(markdown(results))
    print("\nratios: " + json.dumps(ratios) + "\ndiagnostics: " + json.dumps(diagnostics))
    return 0
