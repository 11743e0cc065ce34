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

    from training.steps.calibrate import class_indices

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
    from training.steps.calibrate import nll

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


