"""`export`: rebuild saved_model/ and model.tflite from a model directory's own PyTorch weights and re-measure
both backends on the split it was trained with (no training)."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from training.data.splits import load_splits, recorded_config
from training.steps.evaluate import evaluate_model_dir
from training.steps.export import ExportError, check_tflite_agreement, export_artifacts, weights_version
from training.steps.report import write_reports

logger = logging.getLogger(__name__)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def reexport(output: Path) -> dict:
    """Rebuild ``saved_model/`` and ``model.tflite`` from the directory's own PyTorch weights, without training.

    For exporter changes: the weights (and so the version) stay, which is checked; both backends'
    metrics, their agreement per set and the validation agreement are recomputed on the same split,
    which is rebuilt from the training configuration recorded in model.json (so the data must be where
    it was). A failure anywhere leaves both artifacts as they were.
    """
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


