"""Training step time with and without --frozen-embeddings: ``python -m benchmarks.train_step``.

The bundled run's settings (batch 32, 128 tokens, AdamW, bf16 autocast on CPU unless --fp32) on the
offline base (``make base``), random token ids. Frozen and trainable embeddings alternate in rounds
in this one process; prints each round's mean step time and the pooled ratio (frozen / trainable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

from benchmarks.run import ROOT


def _step_times(model, batch: dict, steps: int, bf16: bool) -> list[float]:  # type: ignore[no-untyped-def]
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=0.01)
    times = []
    for _ in range(steps + 1):  # the first step (optimizer state allocation) is not timed
        started = time.perf_counter()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return times[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default=str(ROOT / "runs" / "base-minilm"))
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--length", type=int, default=128, help="tokens per text")
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    batch = {"input_ids": torch.randint(1000, 30000, (32, args.length)),
             "attention_mask": torch.ones(32, args.length, dtype=torch.long),
             "labels": torch.randint(0, 2, (32,))}
    results: dict[str, list[float]] = {"trainable": [], "frozen": []}
    for _ in range(args.rounds):
        for mode in results:
            model = AutoModelForSequenceClassification.from_pretrained(args.base, num_labels=2).train()
            model.get_input_embeddings().weight.requires_grad_(mode == "trainable")
            times = _step_times(model, batch, args.steps, bf16=not args.fp32)
            results[mode].append(statistics.mean(times))
            print(f"{mode:9s} {statistics.mean(times):.3f} s/step", flush=True)
    pooled = {mode: statistics.mean(values) for mode, values in results.items()}
    print(json.dumps({"s_per_step": {k: round(v, 3) for k, v in pooled.items()},
                      "rounds": {k: [round(x, 3) for x in v] for k, v in results.items()},
                      "ratio_frozen_over_trainable": round(pooled["frozen"] / pooled["trainable"], 3),
                      "length": args.length, "threads": torch.get_num_threads(), "bf16": not args.fp32}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
