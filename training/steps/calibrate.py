"""Calibration: temperature scaling fitted on held-out logits, expected calibration error, reliability diagrams.

Why temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"): fine-tuned
transformers are over-confident, and dividing the logits by one scalar T > 0 before the softmax is
the simplest remedy that works about as well as anything richer on such models. One parameter:

- it keeps the ranking of the classes for every text (the arg-max of logits / T is the arg-max of
  the logits), so labels, accuracy, precision, recall and the confusion matrices do not change;
  only ``score`` and ``scores`` do;
- it cannot overfit a validation split of a few thousand reviews (histogram binning, isotonic
  regression or vector/matrix scaling have tens to hundreds of free values, and can change labels);
- it is applied the same way to both backends from model.json at load (``app.model``), so the
  SavedModel and the TFLite file need no re-export when T changes.

T is fitted on the fp32 SavedModel's logits, the reference backend; the int8 TFLite file's logits
differ from them by quantization noise only, and its ECE is reported separately to show that the
same T serves it. The negative log-likelihood is convex in 1/T, so a golden-section search over
log T finds the minimum without scipy.

ECE is the standard equal-width-bin estimate on the predicted label's probability (the confidence):
``sum_b |B_b| / n * |accuracy(B_b) - mean confidence(B_b)|`` over 15 bins (lo, hi] of [0, 1].
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from app.model import SentimentModel, scaled_softmax
from training.data.dataset import Examples

logger = logging.getLogger(__name__)

BINS = 15
# The search range of T. A fit that lands on an end says the data cannot pin T down (e.g. a
# validation split with no errors drives T towards 0); it is recorded as "at_bound" and logged.
T_RANGE = (0.05, 20.0)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` (class indices) under softmax(logits / temperature)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(z)), np.asarray(labels, dtype=np.int64)]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, tolerance: float = 1e-6) -> dict[str, float | int | bool]:
    """The T > 0 that minimises the NLL of ``labels`` under softmax(logits / T) (golden-section on log T).

    Args:
        logits: [N, classes] raw scores.
        labels: [N] true class indices (columns of ``logits``).
        tolerance: width of the final log-T interval.

    Returns:
        ``{"temperature", "n", "nll_before", "nll_after", "at_bound"}`` (before: T = 1).

    Raises:
        ValueError: no examples, or logits and labels that do not fit together.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) == 0 or len(labels) != len(logits):
        raise ValueError(f"calibration needs [N, classes] logits and N labels with N > 0, got {logits.shape} "
                         f"and {labels.shape}")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {logits.shape[1]}), got {sorted(set(labels.tolist()))}")
    low, high = (math.log(t) for t in T_RANGE)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = low + (1 - ratio) * (high - low), low + ratio * (high - low)
    fa, fb = nll(logits, labels, math.exp(a)), nll(logits, labels, math.exp(b))
    while high - low > tolerance:
        if fa <= fb:  # the minimum lies in [low, b]
            high, b, fb = b, a, fa
            a = low + (1 - ratio) * (high - low)
            fa = nll(logits, labels, math.exp(a))
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(logits, labels, math.exp(b))
    temperature = round(math.exp((low + high) / 2), 5)
    at_bound = not (T_RANGE[0] * 1.001 < temperature < T_RANGE[1] / 1.001)
    if at_bound:
        logger.warning("fitted temperature %.4g is at the end of the search range %s: the data does not pin it down",
                       temperature, T_RANGE)
    return {"temperature": temperature, "n": len(labels), "nll_before": round(nll(logits, labels), 6),
            "nll_after": round(nll(logits, labels, temperature), 6), "at_bound": at_bound}


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, list]:
    """Per equal-width confidence bin (lo, hi] of [0, 1]: count, mean confidence and accuracy (0.0 when empty)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if probabilities.ndim != 2 or len(labels) != len(probabilities):
        raise ValueError(f"need [N, classes] probabilities and N labels, got {probabilities.shape} and {labels.shape}")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    # ceil(c * bins) - 1 puts c in (k / bins, (k + 1) / bins]; a confidence of exactly 0 goes to the first bin
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.where(count > 0, np.bincount(index, confidence, bins) / count, 0.0)
        accuracy = np.where(count > 0, np.bincount(index, correct, bins) / count, 0.0)
    return {"count": count.tolist(), "confidence": [round(float(x), 5) for x in mean_confidence],
            "accuracy": [round(float(x), 5) for x in accuracy]}


def ece(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error of ``probabilities`` [N, classes] for true class indices ``labels`` [N].

    Equal-width bins on the predicted label's probability; the bins' |accuracy - confidence| gaps
    weighted by their share of the examples.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("ECE of no examples")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    gaps = np.abs(np.bincount(index, correct, bins) - np.bincount(index, confidence, bins))  # n_b * |acc - conf|
    return float(gaps.sum() / count.sum())


def calibration_metrics(logits: np.ndarray, labels: np.ndarray, temperature: float, bins: int = BINS) -> dict:
    """ECE and reliability bins of softmax(logits / temperature) and of the uncalibrated softmax(logits)."""
    calibrated, raw = scaled_softmax(logits, temperature), scaled_softmax(logits, 1.0)
    return {"ece": round(ece(calibrated, labels, bins), 5), "ece_uncalibrated": round(ece(raw, labels, bins), 5),
            "reliability": reliability(calibrated, labels, bins),
            "reliability_uncalibrated": reliability(raw, labels, bins)}


def class_indices(model: SentimentModel, labels: list[int]) -> np.ndarray:
    """Examples' 0/1 labels (1 = positive) as column indices of ``model``'s outputs."""
    positive = model.labels.index("POSITIVE") if "POSITIVE" in model.labels else 1
    negative = model.labels.index("NEGATIVE") if "NEGATIVE" in model.labels else 1 - positive
    return np.where(np.asarray(labels) == 1, positive, negative)


def fit_on_model_dir(model_dir: Path, examples: Examples, fitted_on: str) -> dict:
    """model.json's ``calibration`` entry: T fitted on the SavedModel's fp32 logits for ``examples``."""
    model = SentimentModel(model_dir, "savedmodel")
    logits, _ = model.predict_logits(examples.texts)
    labels = class_indices(model, examples.labels)
    fit = fit_temperature(logits, labels)
    entry = {"method": "temperature", "temperature": fit["temperature"], "fitted_on": fitted_on, "n": fit["n"],
             "backend": "savedmodel", "nll_before": fit["nll_before"], "nll_after": fit["nll_after"],
             "ece_before": round(ece(scaled_softmax(logits, 1.0), labels), 5),
             "ece_after": round(ece(scaled_softmax(logits, fit["temperature"]), labels), 5), "bins": BINS}
    if fit["at_bound"]:
        entry["at_bound"] = True
    logger.info("calibration: T = %.4f on %d %s examples (NLL %.4f -> %.4f, ECE %.4f -> %.4f)", entry["temperature"],
                entry["n"], fitted_on, entry["nll_before"], entry["nll_after"], entry["ece_before"], entry["ece_after"])
    return entry


