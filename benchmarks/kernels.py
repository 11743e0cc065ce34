"""One review of exactly N tokens through LiteRT's ``single_<N>`` signature and through ONNX Runtime, no padding
on either side: p50 and multiply-adds per second of each, alternating in one process. Loop one engine under
``perf record`` with ``--only``; docs/benchmark.md#the-int8-kernels-decide-the-ratio says what to read.

    python -m benchmarks.kernels --length 24
    perf record -g -o /tmp/litert.data python -m benchmarks.kernels --length 24 --only tflite --seconds 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from benchmarks.engines import ARTIFACTS, OnnxRuntimeInt8
from benchmarks.run import cpu_info


def multiply_adds(config: dict, length: int, cls_only_last_layer: bool) -> int:
    """Multiply-adds of a DistilBERT sequence classifier on one text of ``length`` tokens.

    ``cls_only_last_layer``: the last layer computes its query, attention output, output projection and
    feed-forward network for the first position only (training/steps/export.py: classifier_logits), as
    model.tflite does; ONNX Runtime's graph computes every layer for every position.
    """
    dim, hidden, layers = config["dim"], config["hidden_dim"], config["n_layers"]
    projections, ffn = dim * dim, 2 * dim * hidden
    full_layer = length * (4 * projections + ffn) + 2 * length * length * dim
    if cls_only_last_layer:
        last = length * 2 * projections + 2 * projections + ffn + 2 * length * dim
    else:
        last = full_layer
    head = dim * dim + dim * (config.get("num_labels") or len(config.get("id2label") or {}) or 2)
    return (layers - 1) * full_layer + last + head


def _tflite(length: int, threads: int) -> Callable[[], object]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(ARTIFACTS / "model.tflite"), num_threads=threads)
    keys = interpreter.get_signature_list()
    if f"single_{length}" not in keys:
        lengths = sorted(int(k.removeprefix("single_")) for k in keys if k.startswith("single_"))
        raise SystemExit(f"model.tflite has no single_{length} signature; choose one of {lengths}")
    runner = interpreter.get_signature_runner(f"single_{length}")
    ids, mask = np.full((1, length), 1000, np.int32), np.ones((1, length), np.int32)
    ids[0, 0] = 101
    return lambda: runner(input_ids=ids, attention_mask=mask)


def _onnxruntime(length: int, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    if not OnnxRuntimeInt8.path.is_file():
        raise SystemExit(f"{OnnxRuntimeInt8.path} is missing: run make bench (or QUICK=1) once to derive it")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(OnnxRuntimeInt8.path), options, providers=["CPUExecutionProvider"])
    ids, mask = np.full((1, length), 1000, np.int64), np.ones((1, length), np.int64)
    ids[0, 0] = 101
    return lambda: session.run(["logits"], {"input_ids": ids, "attention_mask": mask})


RUNNERS = {"tflite": (_tflite, True), "onnxruntime-int8": (_onnxruntime, False)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels", description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=24, help="tokens (a single_<N> signature of model.tflite)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1000, help="per engine per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=list(RUNNERS), help="loop this engine alone (a perf record target)")
    parser.add_argument("--seconds", type=float, default=8.0, help="with --only: how long to loop")
    args = parser.parse_args(argv)
    config = json.loads((ARTIFACTS / "pytorch" / "config.json").read_text())
    names = [args.only] if args.only else list(RUNNERS)
    runs = {name: RUNNERS[name][0](args.length, args.threads) for name in names}
    for run in runs.values():
        for _ in range(20):
            run()
    if args.only:
        started = time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            runs[args.only]()
        return 0
    latencies: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.rounds):  # alternating blocks: both engines see the same drift of a shared machine
        for name, run in runs.items():
            for _ in range(args.requests):
                start = time.perf_counter()
                run()
                latencies[name].append(time.perf_counter() - start)
    result = {"length": args.length, "threads": args.threads, **cpu_info(), "engines": {}}
    for name in names:
        p50 = statistics.median(latencies[name])
        macs = multiply_adds(config, args.length, cls_only_last_layer=RUNNERS[name][1])
        result["engines"][name] = {"p50_ms": round(p50 * 1000, 3), "multiply_adds_m": round(macs / 1e6, 1),
                                   "multiply_adds_per_s_g": round(macs / p50 / 1e9, 1)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
