"""`train`: data -> fine-tune (PyTorch) -> run record -> [finish: choose the cut -> evaluate (PyTorch) -> export ->
calibrate -> evaluate (backends) -> report].

The two halves can run on different machines: ``--fine-tune-only`` stops after the fine-tune and its run
record (no TensorFlow is imported, so a GPU machine needs none), and ``--resume`` on a run directory that
holds ``final_model/`` finishes it, reading the record the fine-tuning machine wrote (training.steps.run_record).
"""

from __future__ import annotations

import json
import logging
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from training.config import LABELS, TrainConfig
from training.data.dataset import DataSplits, Examples
from training.data.splits import load_splits
from training.steps.run_record import (
    RECORD,
    build_record,
    check_split,
    find_record,
    package_versions,
    summary,
    this_device,
    write_record,
)

logger = logging.getLogger(__name__)


def _base_source(base_model: str) -> str:
    note = Path(base_model) / "BASE_SOURCE.txt"
    return note.read_text().strip() if note.is_file() else base_model


def run_training(config: TrainConfig, command: list[str] | None = None) -> dict:
    """The whole `train` command: fine-tune (or find the finished fine-tune), then finish the run.

    Returns the written model.json content ({} with --fine-tune-only, and in processes other than rank 0).
    """
    from training.steps.finetune import average_checkpoints, fine_tune, kept_checkpoints

    timings: dict[str, float] = {}
    started = time.perf_counter()
    config.run_dir.mkdir(parents=True, exist_ok=True)
    splits, eval_sets = load_splits(config)
    logger.info("data: %s", json.dumps({k: v for k, v in splits.report.items() if k != "files"}))
    timings["data_s"] = time.perf_counter() - started

    final_dir = config.run_dir / "final_model"
    finished_elsewhere = config.resume and (final_dir / "config.json").exists()
    found = find_record(config.run_dir) if finished_elsewhere else None
    if found:  # before anything is loaded: a model fine-tuned on another split is refused at once
        check_split(found[0], found[1], splits.train, splits.validation)
    t0 = time.perf_counter()
    final_dir, trainer = fine_tune(config, splits.train, splits.validation)
    timings["fine_tune_s"] = time.perf_counter() - t0
    # Under torchrun every process takes part up to the PyTorch evaluation (the Trainer shards it and
    # gathers the predictions: a collective); only rank 0 exports and writes.
    log_history = json.loads((config.run_dir / "log_history.json").read_text()) if (
        config.run_dir / "log_history.json").exists() else trainer.state.log_history
    if finished_elsewhere:
        record, where = found if found else (None, None)
        if record is None:
            logger.warning("resume: no run record in %s (%s): the fine-tune's device and split are not known",
                           config.run_dir, ", ".join(("run.json", "final_model/run.json")))
    else:
        record = build_record(splits.train, splits.validation, log_history, timings["fine_tune_s"], command,
                              trainer.args.world_size)
        where = config.run_dir / RECORD
    averaging = record.get("checkpoint_average") if record else None
    if config.average_checkpoints and finished_elsewhere and not averaging and not kept_checkpoints(config.run_dir):
        averaging = {"checkpoints": [], "used": False,
                     "reason": "the fine-tune ran elsewhere and its checkpoints were not carried back, and its run "
                               "record does not say whether they were averaged"}
    elif config.average_checkpoints and not (finished_elsewhere and averaging):
        t0 = time.perf_counter()
        final_dir, averaging = average_checkpoints(config, trainer, log_history, final_dir)
        timings["average_checkpoints_s"] = time.perf_counter() - t0
    if not finished_elsewhere and trainer.is_world_process_zero():
        record["checkpoint_average"] = averaging
        write_record(record, config.run_dir, final_dir)
    if config.fine_tune_only:
        logger.info("--fine-tune-only: the fine-tuned model is in %s (%.0f s), its run record in %s; no evaluation "
                    "or export", final_dir, timings["fine_tune_s"], config.run_dir / RECORD)
        return {}
    return finish_run(config, splits, eval_sets, final_dir, trainer, log_history,
                      {"record": record, "where": where, "averaging": averaging}, timings, command)


def finish_run(config: TrainConfig, splits: DataSplits, eval_sets: dict[str, Examples], final_dir: Path,
               trainer, log_history: list[dict], fine_tuned: dict, timings: dict[str, float],  # type: ignore[no-untyped-def]
               command: list[str] | None) -> dict:
    """Finish a fine-tuned run: choose the cut, evaluate with PyTorch, export, calibrate, evaluate both backends,
    write model.json, the plots and the card. ``fine_tuned``: the run record, where it was, the averaging decision."""
    import tensorflow
    import torch
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.metrics import classification_metrics
    from training.steps.calibrate import fit_on_model_dir
    from training.steps.evaluate import evaluate_model_dir
    from training.steps.export import (
        check_tflite_agreement,
        export_artifacts,
        save_pytorch_copy,
        save_tokenizer,
        weights_version,
    )
    from training.steps.finetune import choose_head, predict_labels
    from training.steps.report import write_reports
    from training.steps.soup import SOUP_RECORD

    record, where = fine_tuned["record"], fine_tuned["where"]
    t0 = time.perf_counter()
    trainer.model = AutoModelForSequenceClassification.from_pretrained(final_dir).to(trainer.args.device)
    tokenizer = AutoTokenizer.from_pretrained(final_dir)
    truncation = None
    if config.head_tail:  # how long texts are cut (training.steps.cut), chosen before anything is measured
        truncation = choose_head(trainer, splits.validation, tokenizer, config.max_length)
        timings["truncation_s"] = time.perf_counter() - t0
    head = truncation["head"] if truncation else None
    t0 = time.perf_counter()
    held_out = {"validation": splits.validation, "test": splits.test, **eval_sets}
    pytorch_metrics = {}
    for name, examples_ in held_out.items():
        labels, predicted = predict_labels(trainer, examples_, tokenizer, config.max_length, head)
        pytorch_metrics[name] = classification_metrics(labels, predicted)
    timings["evaluate_pytorch_s"] = time.perf_counter() - t0
    if not trainer.is_world_process_zero():
        logger.info("process %d of %d: training and evaluation done, rank 0 exports", trainer.args.process_index,
                    trainer.args.world_size)
        return {}

    t0 = time.perf_counter()
    output = config.output
    output.mkdir(parents=True, exist_ok=True)
    tokenizer, pt_model, difference = export_artifacts(final_dir, output, splits.validation.texts, config.max_length)
    save_tokenizer(tokenizer, output / "tokenizer.json")
    save_pytorch_copy(final_dir, output / "pytorch")
    version = weights_version(pt_model)
    epochs_run = max((e.get("epoch", 0) for e in log_history), default=0)
    steps = max((e.get("step", 0) for e in log_history), default=0)
    metadata = {
        "name": config.name,
        "version": version,
        "labels": list(LABELS),
        "max_length": config.max_length,
        "vocab_size": int(pt_model.config.vocab_size),
        "architecture": "DistilBertForSequenceClassification",
        "base_model": config.base_model,
        "base_model_source": _base_source(config.base_model),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "training": {
            "command": shlex.join(command) if command else "python -m training train",
            "config": config.to_dict(),
            "data": splits.report,
            "notes": config.notes,
            "epochs_run": round(float(epochs_run), 2),
            "checkpoint_average": fine_tuned["averaging"],
            "steps": steps,
            # processes that trained together (torchrun), 1 otherwise
            "world_size": (record or {}).get("world_size", trainer.args.world_size),
            # from the Trainer's own log: a resumed run that skipped training still reports the real time
            "train_seconds": round(next((e["train_runtime"] for e in log_history if "train_runtime" in e),
                                        timings["fine_tune_s"]), 1),
            # where the fine-tune ran (its run record) and where this process finished it
            "device": record["device"] if record else "not recorded (resumed without a run record)",
            "fine_tune": summary(record, where) if record else None,
            "finished_on": {"device": this_device(), "host": platform.processor() or platform.machine(),
                            "versions": {**package_versions("tokenizers"), "torch": torch.__version__,
                                         "transformers": transformers.__version__,
                                         "tensorflow": tensorflow.__version__}},
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "transformers": transformers.__version__, "tensorflow": tensorflow.__version__},
        },
        "export": {"max_logit_difference": difference},
        "metrics": {},
    }
    if truncation:
        metadata["truncation"] = truncation
    if (final_dir / SOUP_RECORD).is_file():  # a soup: its ingredients, by weights version
        metadata["soup"] = json.loads((final_dir / SOUP_RECORD).read_text(encoding="utf-8"))
    (output / "model.json").write_text(json.dumps(metadata, indent=2))
    metadata["export"]["tflite_validation_agreement"] = check_tflite_agreement(output, splits.validation.texts)
    timings["export_s"] = time.perf_counter() - t0

    # Temperature scaling on the validation split's fp32 SavedModel logits, written before the backend
    # evaluation so that both backends' ECE is measured with it (training.steps.calibrate says why).
    t0 = time.perf_counter()
    metadata["calibration"] = fit_on_model_dir(output, splits.validation, "validation")
    (output / "model.json").write_text(json.dumps(metadata, indent=2))
    timings["calibrate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    backend_metrics = evaluate_model_dir(output, {"test": splits.test, **eval_sets}, ["savedmodel", "tflite"])
    metrics = {name: {"pytorch": pytorch_metrics[name], **backend_metrics.get(name, {})} for name in held_out}
    metadata["metrics"] = metrics
    timings["evaluate_backends_s"] = time.perf_counter() - t0
    metadata["training"]["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    write_reports(metadata, output, log_history or None)  # a soup has no training log of its own
    logger.info("model %s written to %s (%s)", version, output,
                ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return metadata
