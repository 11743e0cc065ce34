"""`calibrate`: fit the softmax temperature of an exported model directory on labelled data, re-measure ECE,
rewrite model.json, the card and reliability.png (the method: training.steps.calibrate)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from training.data import load_examples
from training.data.dataset import expand_paths, text_key
from training.data.splits import eval_set_name
from training.steps.calibrate import fit_on_model_dir
from training.steps.evaluate import evaluate_model_dir
from training.steps.report import write_reports

logger = logging.getLogger(__name__)

CALIBRATED_KEYS = ("ece", "reliability")


def calibrate_model_dir(model_dir: Path, data: list[Path], fmt: str = "auto", eval_data: list[Path] | None = None,
                        eval_fmt: str = "auto") -> dict:
    """The ``calibrate`` command: fit T for an exported model directory, re-measure, rewrite model.json and the card.

    T is fitted on ``data`` (labelled texts the model was not trained on, and not the evaluation
    sets); ECE before and after is measured on each ``eval_data`` set with both backends and merged
    into model.json's metrics. Sets already in the metrics but not re-measured keep their
    uncalibrated ECE and lose their calibrated one, which belonged to the previous T.
    """

    path = model_dir / "model.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing (is --model {model_dir} an exported model directory?)")
    metadata = json.loads(path.read_text(encoding="utf-8"))
    examples = load_examples(data, fmt)
    eval_sets = {eval_set_name(p): load_examples([p], eval_fmt) for p in expand_paths(eval_data or [])}
    described = ", ".join(str(p) for p in data) if len(data) <= 2 else (
        f"{len(data)} paths under {os.path.commonpath([str(p) for p in data])}")
    entry = fit_on_model_dir(model_dir, examples, described)
    entry["data"] = [str(p) for p in data]  # the exact selection, for a rerun
    held_out = {text_key(t) for s in eval_sets.values() for t in s.texts}
    overlap = sum(text_key(t) in held_out for t in examples.texts)
    if overlap:
        logger.warning("%d calibration texts also occur in the evaluation sets: their ECE is not a held-out figure",
                       overlap)
    entry["overlap_with_eval_sets"] = overlap
    metadata["calibration"] = entry
    path.write_text(json.dumps(metadata, indent=2))  # before evaluating: the evaluation loads this T
    measured = evaluate_model_dir(model_dir, eval_sets, ["savedmodel", "tflite"]) if eval_sets else {}
    for name, by_backend in metadata.get("metrics", {}).items():
        if name not in measured:
            for values in by_backend.values():
                for key in CALIBRATED_KEYS:
                    values.pop(key, None)
    for name, values in measured.items():
        metadata.setdefault("metrics", {}).setdefault(name, {}).update(values)
    write_reports(metadata, model_dir, None)
    return metadata
