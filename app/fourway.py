"""Four-way sentiment (POSITIVE / NEGATIVE / NEUTRAL / MIXED, as Amazon Comprehend answers) and stars.

One text's answer is built from what one model call gives for the text and for its parts (the
clauses of its sentences, ``app.segments``), and model.json's ``four_way`` entry:

- ``star_scores``: the rating head's softmax over 1-5 stars; ``stars`` their expectation.
- MIXED evidence ``m``: how clearly the text holds both a positive and a negative part,
  min(max over parts of P(POSITIVE), max over parts of P(NEGATIVE)) with the binary head's calibrated
  probabilities; 0 for a text of one part.
- NEUTRAL evidence ``u``: the rating head's P(3 stars).
- Raw scores: MIXED m; NEUTRAL (1 - m) u; NEGATIVE and POSITIVE (1 - m)(1 - u) times the binary
  head's probabilities, so that ``sentiment`` agrees with ``label`` whenever it is one of the two.
- Each raw score is multiplied by exp(bias) of its class and the four renormalised to sum to 1;
  ``sentiment`` is the largest. The biases are fitted on validation data (the training command
  ``rating``), one set for a text of one sentence (``sentence``) and one for a longer text
  (``review``), and written in model.json and the card.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SENTIMENTS = ("POSITIVE", "NEGATIVE", "NEUTRAL", "MIXED")
STAR_LABELS = ("1", "2", "3", "4", "5")
RULES = ("sentence", "review")


class FourWayError(ValueError):
    """model.json's ``four_way`` entry is malformed."""


def read_rules(entry: object) -> dict[str, np.ndarray]:
    """{"sentence": biases, "review": biases} (log-space, SENTIMENTS order) from model.json's ``four_way``."""
    if not isinstance(entry, dict) or not isinstance(entry.get("bias"), dict):
        raise FourWayError(f"'four_way' must be an object with a 'bias' object per rule {RULES}, got {entry!r}")
    rules = {}
    for rule in RULES:
        biases = entry["bias"].get(rule)
        if not isinstance(biases, dict) or set(biases) != set(SENTIMENTS):
            raise FourWayError(f"'four_way.bias.{rule}' must give a number for each of {SENTIMENTS}, got {biases!r}")
        values = [biases[s] for s in SENTIMENTS]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise FourWayError(f"'four_way.bias.{rule}' values must be finite numbers, got {biases!r}")
        rules[rule] = np.asarray(values, dtype=np.float64)
    return rules


def mixed_evidence(part_probabilities: np.ndarray, positive: int, negative: int) -> float:
    """min(max P(positive), max P(negative)) over a text's parts (rows); 0 for fewer than two parts."""
    if part_probabilities.shape[0] < 2:
        return 0.0
    return float(min(part_probabilities[:, positive].max(), part_probabilities[:, negative].max()))


def raw_scores(binary: np.ndarray, positive: int, negative: int, star_probabilities: np.ndarray,
               mixed: np.ndarray) -> np.ndarray:
    """[N, 4] raw scores in SENTIMENTS order (see the module) for N texts; each row sums to 1."""
    neutral = star_probabilities[:, 2].astype(np.float64)
    mixed = np.asarray(mixed, dtype=np.float64)
    rest = (1.0 - mixed) * (1.0 - neutral)
    polar = binary[:, positive].astype(np.float64) + binary[:, negative]
    out = np.empty((len(binary), 4), dtype=np.float64)
    out[:, 0] = rest * binary[:, positive] / polar
    out[:, 1] = rest * binary[:, negative] / polar
    out[:, 2] = (1.0 - mixed) * neutral
    out[:, 3] = mixed
    return out


def apply_bias(raw: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """raw x exp(bias), renormalised per row."""
    weighted = raw * np.exp(bias - bias.max())
    return weighted / weighted.sum(axis=1, keepdims=True)


def expected_stars(star_probabilities: np.ndarray) -> np.ndarray:
    """Expected rating 1.0-5.0 per row."""
    return star_probabilities @ np.arange(1, 6, dtype=np.float64)


def sentiment_of(scores: np.ndarray) -> list[str]:
    return [SENTIMENTS[i] for i in np.argmax(scores, axis=1)]


def rule_for(sentence_count: int) -> str:
    """Which bias set judges a text: one sentence is judged as a sentence, anything longer as a review."""
    return "sentence" if sentence_count <= 1 else "review"


def scores_dict(row: Sequence[float], labels: Sequence[str]) -> dict[str, float]:
    return {label: round(float(p), 6) for label, p in zip(labels, row, strict=True)}
