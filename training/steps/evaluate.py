"""Evaluate an exported model directory with its serving backends (TensorFlow / LiteRT + tokenizers only)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from training.data.dataset import Examples
from training.metrics import classification_metrics
from training.steps.calibrate import calibration_metrics, class_indices

logger = logging.getLogger(__name__)


def backends_for(choice: str) -> list[str]:
    return ["savedmodel", "tflite"] if choice == "both" else [choice]


def accuracy_by_category(examples: Examples, predicted: np.ndarray) -> dict[str, dict[str, float]]:
    """``{category: {"n", "accuracy"}}`` of ``predicted`` labels against ``examples``' own."""
    correct = np.asarray(examples.labels) == np.asarray(predicted)
    categories = np.asarray(examples.categories)
    return {str(c): {"n": int((categories == c).sum()), "accuracy": round(float(correct[categories == c].mean()), 4)}
            for c in sorted(set(examples.categories))}


def _logits(model, texts: list[str], scored: dict[str, np.ndarray]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``model``'s logits for ``texts``, scoring only the texts that ``scored`` does not hold yet (and adding them)."""
    new = list(dict.fromkeys(t for t in texts if t not in scored))
    if new:
        scored.update(zip(new, model.predict_logits(new)[0], strict=True))
    return np.stack([scored[t] for t in texts]) if texts else np.zeros((0, len(model.labels)), dtype=np.float32)


def evaluate_model_dir(model_dir: Path, datasets: dict[str, Examples], backends: list[str]) -> dict[str, dict[str, dict]]:
    """``{set: {backend: metrics}}`` plus, with two backends, their label agreement per set."""
    from tqdm.auto import tqdm

    from app.model import SentimentModel

    results: dict[str, dict[str, dict]] = {name: {} for name in datasets}
    predictions: dict[str, dict[str, np.ndarray]] = {name: {} for name in datasets}
    for backend in backends:
        model = SentimentModel(model_dir, backend)
        positive = model.labels.index("POSITIVE") if "POSITIVE" in model.labels else 1
        scored: dict[str, np.ndarray] = {}  # text -> logits: a set made of earlier ones (heldout/all) costs nothing
        for name, examples in tqdm(datasets.items(), desc=f"evaluate {backend}", unit="set"):
            logits = _logits(model, examples.texts, scored)  # arg-max of logits = of the calibrated probabilities
            predicted = (logits.argmax(axis=1) == positive).astype(int)
            predictions[name][backend] = predicted
            results[name][backend] = classification_metrics(examples.labels, predicted)
            if len(set(examples.categories)) > 1:
                results[name][backend]["by_category"] = accuracy_by_category(examples, predicted)
            if len(examples):  # ECE before / after model.json's temperature (training.steps.calibrate)
                results[name][backend].update(calibration_metrics(
                    logits, class_indices(model, examples.labels), model.temperature))
            logger.info("%s / %s: accuracy %.4f on %d", name, backend, results[name][backend]["accuracy"], len(examples))
    if len(backends) == 2:
        for name in datasets:
            a, b = (predictions[name][x] for x in backends)
            results[name]["agreement"] = {"labels": round(float(np.mean(a == b)), 5),
                                          "accuracy_difference": round(
                                              results[name][backends[1]]["accuracy"]
                                              - results[name][backends[0]]["accuracy"], 4)}
    return results
