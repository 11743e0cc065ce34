"""`train`: data -> fine-tune -> evaluate (PyTorch) -> export -> evaluate (backends) -> model.json."""

from __future__ import annotations

import json
import logging
import platform
import shlex
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from training.config import HELDOUT_ALL, HELDOUT_PREFIX, LABELS, TrainConfig
from training.data import LabelSpec, build_splits, load_examples
from training.data.dataset import DataSplits, Examples, drop_eval_leaks

logger = logging.getLogger(__name__)


def eval_set_name(path: Path) -> str:
    """A readable name for an evaluation file: its folder, plus the file stem when folders hold several."""
    parent = path.parent.name if path.is_file() else path.name
    siblings = [p for p in path.parent.iterdir()
                if p.suffix == path.suffix and p.stem.lower() not in ("readme", "license")] if path.is_file() else []
    return f"{parent}/{path.stem}" if len(siblings) > 1 else parent


def _base_source(base_model: str) -> str:
    note = Path(base_model) / "BASE_SOURCE.txt"
    return note.read_text().strip() if note.is_file() else base_model


def load_eval_sets(config: TrainConfig) -> dict[str, Examples]:
    from training.data.dataset import expand_paths

    sets: dict[str, Examples] = {}
    for path in expand_paths(config.eval_data):
        sets[eval_set_name(path)] = load_examples([path], config.eval_format)
    return sets


def load_splits(config: TrainConfig) -> tuple[DataSplits, dict[str, Examples]]:
    """Training / validation / test split and the evaluation sets, exactly as ``config`` defines them."""
    spec = LabelSpec(config.text_column, config.label_column, config.positive_label, config.negative_label)
    examples = load_examples(config.data, config.format, spec)
    eval_sets = load_eval_sets(config)
    eval_texts = [t for s in eval_sets.values() for t in s.texts]
    if eval_texts:
        examples = drop_eval_leaks(examples, eval_texts)
    splits = build_splits(
        examples, seed=config.seed, validation_fraction=config.validation_fraction,
        test_fraction=config.test_fraction, max_train_samples=config.max_train_samples,
        balance=config.balance, sample_seed=config.sample_seed, exclude_texts=eval_texts,
        train_sources=config.train_source, title_examples=config.title_examples,
        holdout_categories=config.holdout_category, category_cap=config.category_cap,
        after_sample=config.after_sample,
    )
    if splits.heldout:  # the out-of-category figure: each held-out category, and all of them together
        for category, held in splits.heldout.items():
            eval_sets[f"{HELDOUT_PREFIX}{category}"] = held
        if len(splits.heldout) > 1:
            eval_sets[HELDOUT_ALL] = _concat(list(splits.heldout.values()))
    return splits, eval_sets



def _concat(parts: list[Examples]) -> Examples:
    return Examples([t for p in parts for t in p.texts], [label for p in parts for label in p.labels],
                    categories=[c for p in parts for c in p.categories])


def check_tflite_agreement(output: Path, texts: list[str]) -> dict[str, float]:
    """int8-vs-fp32 label agreement on ``texts``; refuses an export under MIN_TFLITE_AGREEMENT."""
    from training.export import MIN_TFLITE_AGREEMENT, ExportError, tflite_agreement

    agreement = tflite_agreement(output, texts)
    if agreement["agreement"] < MIN_TFLITE_AGREEMENT:
        raise ExportError(f"int8 TFLite agrees with fp32 on only {agreement['agreement']:.2%} of the "
                          f"validation split (< {MIN_TFLITE_AGREEMENT:.0%}); not exporting")
    return agreement


def write_reports(metadata: dict, output: Path, log_history: list[dict] | None) -> None:
    """model.json, the plots and MODEL_CARD.md from ``metadata``."""
    from training.calibration import plot_reliability
    from training.report import (
        out_of_category_drop,
        plot_categories,
        plot_confusion_matrices,
        plot_learning_curves,
        write_model_card,
    )

    if (drop := out_of_category_drop(metadata["metrics"])) is not None:
        metadata["out_of_category"] = drop
    (output / "model.json").write_text(json.dumps(metadata, indent=2))
    plot_confusion_matrices({k: v for k, v in metadata["metrics"].items() if k != "validation"}, list(LABELS),
                            output / "confusion_matrices.png")
    if log_history is not None:
        plot_learning_curves(log_history, output / "learning_curves.png", metadata["training"].get("checkpoint_average"))
    if not plot_reliability(metadata["metrics"], output / "reliability.png"):
        (output / "reliability.png").unlink(missing_ok=True)  # no ECE measured: no diagram of another model's
    if not plot_categories(metadata["metrics"], output / "categories.png"):
        (output / "categories.png").unlink(missing_ok=True)
    write_model_card(metadata, output / "MODEL_CARD.md")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def recorded_config(output: Path) -> tuple[dict, TrainConfig]:
    """``output``'s model.json and the training configuration it records, with its data checked to be there."""
    from dataclasses import fields

    metadata = json.loads((output / "model.json").read_text())
    recorded = metadata.get("training", {}).get("config")
    if not recorded:
        raise ValueError(f"{output / 'model.json'}: no training configuration recorded; cannot rebuild its split")
    config = TrainConfig(**{f.name: recorded[f.name] for f in fields(TrainConfig) if f.name in recorded})
    missing = [str(p) for p in [*config.data, *config.eval_data] if not p.exists()]
    if missing:
        raise ValueError(f"the model's training/evaluation data is not there: {', '.join(missing)} "
                         "(run from the directory it was trained in)")
    return metadata, config


def rebuild_splits(output: Path) -> tuple[dict, DataSplits, dict[str, Examples]]:
    """model.json, the split and the evaluation sets of the run that wrote ``output``, rebuilt from its record."""
    metadata, config = recorded_config(output)
    splits, eval_sets = load_splits(config)
    return metadata, splits, eval_sets


def reexport(output: Path) -> dict:
    """Rebuild ``saved_model/`` and ``model.tflite`` from the directory's own PyTorch weights, without training.

    For exporter changes: the weights (and so the version) stay, which is checked; both backends'
    metrics, their agreement per set and the validation agreement are recomputed on the same split,
    which is rebuilt from the training configuration recorded in model.json (so the data must be where
    it was). A failure anywhere leaves both artifacts as they were.
    """
    from training.evaluate import evaluate_model_dir
    from training.export import ExportError, export_artifacts, weights_version

    metadata, config = recorded_config(output)
    # Before the split is rebuilt and anything converted: another model's weights are refused at once.
    from transformers import AutoModelForSequenceClassification

    version = weights_version(AutoModelForSequenceClassification.from_pretrained(output / "pytorch"))
    if version != metadata["version"]:
        raise ExportError(f"{output / 'pytorch'} holds weights {version}, but model.json is "
                          f"version {metadata['version']}: not the model this directory describes")
    splits, eval_sets = load_splits(config)
    started = time.perf_counter()
    kept = {name: output / f"{name}.previous" for name in ("model.tflite", "saved_model")}
    for name, previous in kept.items():
        _remove(previous)
        (shutil.copytree if (output / name).is_dir() else shutil.copy2)(output / name, previous)
    try:
        _, _, difference = export_artifacts(output / "pytorch", output, splits.validation.texts,
                                            int(metadata["max_length"]))
        metadata["export"]["max_logit_difference"] = difference
        metadata["export"]["tflite_validation_agreement"] = check_tflite_agreement(output, splits.validation.texts)
    except BaseException:
        for name, previous in kept.items():  # a failed re-export leaves the directory as it was
            _remove(output / name)
            previous.replace(output / name)
        raise
    for previous in kept.values():
        _remove(previous)
    backend_metrics = evaluate_model_dir(output, {"test": splits.test, **eval_sets}, ["savedmodel", "tflite"])
    for name, values in backend_metrics.items():
        metadata["metrics"].setdefault(name, {}).update(values)
    metadata["export"]["reexported"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_reports(metadata, output, None)
    logger.info("saved_model and model.tflite of %s re-exported and re-measured in %.0f s", metadata["version"],
                time.perf_counter() - started)
    return metadata


def run_training(config: TrainConfig, command: list[str] | None = None) -> dict:
    """The whole `train` command. Returns the written model.json content."""
    import tensorflow
    import torch
    import transformers

    from training.evaluate import evaluate_model_dir
    from training.export import export_artifacts, save_pytorch_copy, save_tokenizer, weights_version
    from training.metrics import classification_metrics
    from training.trainer import average_checkpoints, choose_head, fine_tune, predict_labels

    timings: dict[str, float] = {}
    started = time.perf_counter()
    config.run_dir.mkdir(parents=True, exist_ok=True)
    splits, eval_sets = load_splits(config)
    logger.info("data: %s", json.dumps({k: v for k, v in splits.report.items() if k != "files"}))
    timings["data_s"] = time.perf_counter() - started

    t0 = time.perf_counter()
    final_dir, trainer = fine_tune(config, splits.train, splits.validation)
    timings["fine_tune_s"] = time.perf_counter() - t0
    # Under torchrun every process takes part up to the PyTorch evaluation (the Trainer shards it and
    # gathers the predictions: a collective); only rank 0 exports and writes.
    log_history = json.loads((config.run_dir / "log_history.json").read_text()) if (
        config.run_dir / "log_history.json").exists() else trainer.state.log_history
    averaging = None
    if config.average_checkpoints:
        t0 = time.perf_counter()
        final_dir, averaging = average_checkpoints(config, trainer, log_history, final_dir)
        timings["average_checkpoints_s"] = time.perf_counter() - t0
    if config.fine_tune_only:
        logger.info("--fine-tune-only: the fine-tuned model is in %s (%.0f s); no evaluation or export", final_dir,
                    timings["fine_tune_s"])
        return {}

    t0 = time.perf_counter()
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    trainer.model = AutoModelForSequenceClassification.from_pretrained(final_dir).to(trainer.args.device)
    tokenizer = AutoTokenizer.from_pretrained(final_dir)
    truncation = None
    if config.head_tail:  # how long texts are cut (training.truncation), chosen before anything is measured
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
            "checkpoint_average": averaging,
            "steps": steps,
            "world_size": trainer.args.world_size,  # processes that trained together (torchrun), 1 otherwise
            # from the Trainer's own log: a resumed run that skipped training still reports the real time
            "train_seconds": round(next((e["train_runtime"] for e in log_history if "train_runtime" in e),
                                        timings["fine_tune_s"]), 1),
            "device": (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                       else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"),
            "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                         "transformers": transformers.__version__, "tensorflow": tensorflow.__version__},
        },
        "export": {"max_logit_difference": difference},
        "metrics": {},
    }
    if truncation:
        metadata["truncation"] = truncation
    (output / "model.json").write_text(json.dumps(metadata, indent=2))
    metadata["export"]["tflite_validation_agreement"] = check_tflite_agreement(output, splits.validation.texts)
    timings["export_s"] = time.perf_counter() - t0

    # Temperature scaling on the validation split's fp32 SavedModel logits, written before the backend
    # evaluation so that both backends' ECE is measured with it (training/calibration.py says why).
    from training.calibration import fit_on_model_dir

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
    write_reports(metadata, output, log_history)
    logger.info("model %s written to %s (%s)", version, output,
                ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
    return metadata
