"""Which tokens of a long review the model reads: the head/tail split of model.json's ``truncation``.

A review longer than max_length tokens has to be cut. Keeping only its start (what a tokenizer does
by itself) drops the end, where reviewers often give their verdict ("... returned it", "... five
stars"). Keeping the first ``head`` tokens and the last max_length - 2 - head instead is the
"head + tail" truncation of Sun et al. (2019, "How to Fine-Tune BERT for Text Classification?"),
which read long reviews best in their comparison. It costs nothing at run time: the same number of
tokens goes through the same graph.

``head`` is chosen on the validation split (not on the test split or the evaluation sets) by
accuracy with the fp32 SavedModel, ties going to the lower negative log-likelihood. Only texts that
are longer than max_length depend on the choice, so only they are scored per candidate. The choice
goes into model.json, where the runtime (``app.model``) reads it for both backends.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from app.model import SentimentModel, truncation_head
from training.data.dataset import Examples

logger = logging.getLogger(__name__)

STEP = 16  # candidates: 0, 16, 32, ... and max_length - 2 (the head only)


def candidates(max_length: int) -> list[int]:
    room = max_length - 2
    return sorted({*range(0, room, STEP), room})


def choose_head(model_dir: Path, validation: Examples, backend: str = "savedmodel") -> dict:
    """model.json's ``truncation`` entry: the head (of ``candidates``) with the best validation accuracy."""
    from tqdm.auto import tqdm

    from training.calibration import class_indices

    model = SentimentModel(model_dir, backend)
    labels = class_indices(model, validation.labels)
    room = model.max_length - 2
    encodings = [e.ids for e in model.tokenizer.encode_batch(list(validation.texts))]
    long = [i for i, x in enumerate(encodings) if len(x) > model.max_length]
    short = [i for i, x in enumerate(encodings) if len(x) <= model.max_length]
    logits = np.zeros((len(encodings), len(model.labels)), dtype=np.float32)
    if short:  # texts that fit read the same whatever the head: scored once
        logits[short] = model._infer_ids([encodings[i] for i in short], room, None)
    scored: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for head in tqdm(candidates(model.max_length), desc="truncation: head on validation", unit="head"):
        if long:
            logits[long] = model._infer_ids([encodings[i] for i in long], head, None)
        scored[head] = (labels, logits.copy())
    return truncation_entry(scored, model.max_length, backend, len(encodings), len(long))


def truncation_entry(scored: dict[int, tuple[np.ndarray, np.ndarray]], max_length: int, backend: str, n: int,
                     n_long: int) -> dict:
    """model.json's ``truncation`` entry from ``{head: (label indices, logits)}`` on the validation split:
    the best accuracy, ties to the lower negative log-likelihood, then to the longer head."""
    from training.calibration import nll

    scores: dict[int, dict[str, float]] = {}
    for head, (labels, logits) in scored.items():
        scores[head] = {"accuracy": round(float(np.mean(logits.argmax(axis=1) == labels)), 5),
                        "nll": round(nll(logits, labels), 5)}
    best = max(scores, key=lambda h: (scores[h]["accuracy"], -scores[h]["nll"], h))
    room = max_length - 2
    logger.info("truncation: head %d + tail %d (validation accuracy %.4f; head only %.4f; %d of %d texts longer "
                "than %d tokens)", best, room - best, scores[best]["accuracy"], scores[room]["accuracy"], n_long,
                n, max_length)
    return {"head": best, "tail": room - best, "chosen_on": "validation", "backend": backend, "n": n,
            "longer_than_max_length": n_long, "by_head": {str(h): s for h, s in scores.items()}}


def set_truncation(model_dir: Path, entry: dict | None) -> None:
    """Write ``entry`` as model.json's ``truncation`` (None removes it), checked as the runtime checks it."""
    path = model_dir / "model.json"
    metadata = json.loads(path.read_text(encoding="utf-8"))
    metadata.pop("truncation", None)
    if entry is not None:
        metadata["truncation"] = entry
        truncation_head(metadata, path)
    path.write_text(json.dumps(metadata, indent=2))


def retruncate_model_dir(model_dir: Path, head: int | None = None) -> dict:
    """The ``truncation`` command: choose (or set) the head, then refit T and re-measure both backends.

    The split is rebuilt from the training configuration in model.json (as ``export`` does), so the
    data must be where it was. T is refitted on the validation split because the logits of long
    texts change with the cut. The PyTorch rows of the metrics are kept as training measured them;
    ``truncation.pytorch_head`` records the head they were measured with.
    """
    from training.calibration import fit_on_model_dir
    from training.evaluate import evaluate_model_dir
    from training.pipeline import rebuild_splits, write_reports

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
