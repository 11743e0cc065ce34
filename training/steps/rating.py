"""The rating head on the frozen encoder, and the four-way rules' biases: fitted on validation data.

The head is a linear layer (768 -> 5 stars) reading the same vector as the binary classifier (the
ReLU'd ``pre_classifier`` output of the [CLS] position), so both heads come out of one forward pass
and the binary head's weights, and so its outputs, do not change. It is a multinomial logistic
regression (scikit-learn, L2, stars weighted equally) whose strength is chosen on the validation
split by the mean absolute error of the expected rating with every star weighted equally: a service
cannot assume one shop's rating mix, and a mix with many 5-star reviews rewards a head that rarely
leaves 5.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from app.fourway import SENTIMENTS, apply_bias, expected_stars, raw_scores
from app.model import cut_ids, truncation_head

logger = logging.getLogger(__name__)

STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
BIAS_GRID = np.round(np.arange(-8.0, 4.01, 0.25), 2)  # -8: a class the data says not to answer is off
HEAD_FILE = "rating_head.npz"


class FeatureExtractor:
    """Features (ReLU'd pre_classifier output) and binary logits of the PyTorch copy, cut as the runtime cuts."""

    def __init__(self, model_dir: Path, metadata: dict, batch_size: int = 64) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModelForSequenceClassification

        self.torch = torch
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir / "pytorch").eval()
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_length = int(metadata["max_length"])
        self.head = truncation_head(metadata)
        self.batch_size = batch_size

    def __call__(self, texts: Sequence[str], desc: str = "features") -> tuple[np.ndarray, np.ndarray]:
        from tqdm.auto import tqdm

        torch = self.torch
        ids = [cut_ids(e.ids, self.max_length, self.head) for e in self.tokenizer.encode_batch(list(texts))]
        order = np.argsort([len(x) for x in ids], kind="stable")
        features = np.zeros((len(ids), self.model.config.dim), dtype=np.float32)
        logits = np.zeros((len(ids), self.model.config.num_labels), dtype=np.float32)
        body, pre, classifier = self.model.distilbert, self.model.pre_classifier, self.model.classifier
        with torch.inference_mode(), tqdm(total=len(ids), desc=desc, unit="text", mininterval=10) as bar:
            for start in range(0, len(order), self.batch_size):
                index = order[start:start + self.batch_size]
                longest = max(len(ids[i]) for i in index)
                input_ids = torch.zeros((len(index), longest), dtype=torch.long)
                mask = torch.zeros((len(index), longest), dtype=torch.long)
                for row, i in enumerate(index):
                    input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                    mask[row, :len(ids[i])] = 1
                hidden = body(input_ids=input_ids, attention_mask=mask)[0][:, 0]
                pooled = torch.relu(pre(hidden))
                features[index] = pooled.numpy()
                logits[index] = classifier(pooled).numpy()
                bar.update(len(index))
        return features, logits


def star_weights(stars: np.ndarray) -> np.ndarray:
    """Per-review weights under which every star counts equally."""
    stars = np.asarray(stars, dtype=np.int64)
    counts = np.bincount(stars, minlength=6)[1:].astype(np.float64)
    present = counts > 0
    return np.array([len(stars) / (present.sum() * counts[s - 1]) for s in stars])


def balanced_mae(probabilities: np.ndarray, stars: np.ndarray) -> float:
    """Mean absolute error of the expected rating, every star weighted equally."""
    return float(np.average(np.abs(expected_stars(probabilities) - stars), weights=star_weights(stars)))


def star_metrics(probabilities: np.ndarray, stars: np.ndarray) -> dict[str, float | int]:
    """Exact (rounded expectation), within one star and MAE; natural and with every star weighted equally."""
    stars = np.asarray(stars, dtype=np.int64)
    expected = expected_stars(probabilities)
    rounded = np.clip(np.rint(expected), 1, 5)
    weights = star_weights(stars)
    error = np.abs(expected - stars)
    return {"n": len(stars),
            "mae": round(float(error.mean()), 4),
            "exact": round(float(np.mean(rounded == stars)), 4),
            "within_one": round(float(np.mean(np.abs(rounded - stars) <= 1)), 4),
            "mae_star_balanced": round(float(np.average(error, weights=weights)), 4),
            "exact_star_balanced": round(float(np.average(rounded == stars, weights=weights)), 4),
            "within_one_star_balanced": round(float(np.average(np.abs(rounded - stars) <= 1, weights=weights)), 4)}


def fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray) -> dict:
    """The head (weight [5, 768], bias [5]) whose strength gives the lowest star-balanced validation MAE."""
    from sklearn.linear_model import LogisticRegression

    tried, best = [], (float("inf"), STRENGTHS[0], None)
    for strength in STRENGTHS:
        head = LogisticRegression(C=strength, max_iter=2000, class_weight="balanced")
        head.fit(train_x, train_y)
        mae = balanced_mae(head.predict_proba(val_x), val_y)
        tried.append({"C": strength, "validation_mae_star_balanced": round(mae, 4)})
        logger.info("rating head C=%g: validation MAE (stars weighted equally) %.4f", strength, mae)
        if mae < best[0]:
            best = (mae, strength, head)
    _, strength, head = best
    return {"weight": head.coef_.astype(np.float32), "bias": head.intercept_.astype(np.float32), "C": strength,
            "tried": tried}


def star_probabilities(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    logits = features @ weight.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def save_head(path: Path, weight: np.ndarray, bias: np.ndarray) -> None:
    np.savez(path, weight=weight.astype(np.float32), bias=bias.astype(np.float32))


def load_head(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["weight"], data["bias"]


def f1_table(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str],
             weights: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 per class, and their macro average (optionally weighted rows)."""
    truth_a, pred_a = np.asarray(truth), np.asarray(predicted)
    w = np.ones(len(truth_a)) if weights is None else weights
    table: dict[str, dict[str, float]] = {}
    for cls in classes:
        tp = float(w[(truth_a == cls) & (pred_a == cls)].sum())
        fp = float(w[(truth_a != cls) & (pred_a == cls)].sum())
        fn = float(w[(truth_a == cls) & (pred_a != cls)].sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        table[cls] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                      "support": int((truth_a == cls).sum())}
    table["macro"] = {"f1": round(float(np.mean([table[c]["f1"] for c in classes])), 4)}
    return table


def three_way(sentiments: Sequence[str]) -> list[str]:
    """The bars' reading of a four-way answer against stars: MIXED counts as NEUTRAL."""
    return ["NEUTRAL" if s == "MIXED" else s for s in sentiments]


def stars_to_sentiment(stars: Sequence[int]) -> list[str]:
    return ["NEGATIVE" if s <= 2 else "NEUTRAL" if s == 3 else "POSITIVE" for s in stars]


def fit_bias(raw: np.ndarray, truth: Sequence[str], classes: Sequence[str], collapse_mixed: bool,
             weights: np.ndarray | None = None) -> tuple[dict[str, float], float]:
    """Biases of NEUTRAL and MIXED (POSITIVE and NEGATIVE stay 0) maximising macro-F1 over ``classes`` on the
    grid BIAS_GRID; ties go to the smaller biases. Returns the biases and the F1."""
    best: tuple[float, float, dict[str, float]] = (-1.0, 0.0, {})
    for neutral, mixed in itertools.product(BIAS_GRID, BIAS_GRID):
        bias = np.array([0.0, 0.0, neutral, mixed])
        predicted = [SENTIMENTS[i] for i in np.argmax(apply_bias(raw, bias), axis=1)]
        if collapse_mixed:
            predicted = three_way(predicted)
        score = f1_table(truth, predicted, classes, weights)["macro"]["f1"]
        size = abs(neutral) + abs(mixed)
        if score > best[0] + 1e-12 or (abs(score - best[0]) <= 1e-12 and size < best[1]):
            best = (score, size, {"POSITIVE": 0.0, "NEGATIVE": 0.0, "NEUTRAL": float(neutral), "MIXED": float(mixed)})
    return best[2], best[0]


def raw_for(binary_probabilities: np.ndarray, positive: int, negative: int, stars_p: np.ndarray,
            mixed: np.ndarray) -> np.ndarray:
    return raw_scores(binary_probabilities, positive, negative, stars_p, mixed)
