"""`truncation`: choose (or set) how an exported model cuts long texts, refit T, re-measure both backends
(the choice itself: training.steps.cut)."""

from __future__ import annotations

import json
from pathlib import Path

from app.model import truncation_head
from training.data.splits import rebuild_splits
from training.steps.calibrate import fit_on_model_dir
from training.steps.cut import choose_head, set_truncation
from training.steps.evaluate import evaluate_model_dir
from training.steps.report import write_reports


def retruncate_model_dir(model_dir: Path, head: int | None = None) -> dict:
    """The ``truncation`` command: choose (or set) the head, then refit T and re-measure both backends.

    The split is rebuilt from the training configuration in model.json (as ``export`` does), so the
    data must be where it was. T is refitted on the validation split because the logits of long
    texts change with the cut. The PyTorch rows of the metrics are kept as training measured them;
    ``truncation.pytorch_head`` records the head they were measured with.
    """

    path = model_dir / "model.json"
    if not path.is_file():
        raise ValueError(f"{path}: missing (is --model {model_dir} an exported model directory?)")
    if head is not None:  # a head out of range stops here, before the split is rebuilt
        room = int(json.loads(path.read_text(encoding="utf-8"))["max_length"]) - 2
        entry = {"head": head, "tail": room - head, "chosen_on": "set by hand"}
        truncation_head({"max_length": room + 2, "truncation": entry}, path)
    metadata, splits, eval_sets = rebuild_splits(model_dir)
    if head is None:
        entry = choose_head(model_dir, splits.validation)
    if any("pytorch" in by_backend for by_backend in metadata.get("metrics", {}).values()):
        entry["pytorch_head"] = truncation_head(metadata)  # the PyTorch rows stay as training measured them
    set_truncation(model_dir, entry)
    metadata["truncation"] = entry
    metadata["calibration"] = fit_on_model_dir(model_dir, splits.validation, "validation")
    (model_dir / "model.json").write_text(json.dumps(metadata, indent=2))  # the evaluation loads this T
    measured = evaluate_model_dir(model_dir, {"test": splits.test, **eval_sets}, ["savedmodel", "tflite"])
    for name, values in measured.items():
        metadata.setdefault("metrics", {}).setdefault(name, {}).update(values)
    write_reports(metadata, model_dir, None)
    return metadata
