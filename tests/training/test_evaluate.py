"""Scoring an exported model directory on several sets (training/steps/evaluate.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.synthetic import reviews


def test_a_set_made_of_earlier_sets_is_not_scored_again(tiny_artifacts: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """heldout/all is the held-out categories together: its texts were scored with theirs, and its metrics are
    what scoring it directly gives."""
    from app.model import SentimentModel
    from training.data.dataset import Examples
    from training.steps.evaluate import evaluate_model_dir

    texts, labels = reviews(40, seed=8)
    first = Examples(texts=texts[:25], labels=labels[:25], categories=["a"] * 25)
    second = Examples(texts=texts[25:], labels=labels[25:], categories=["b"] * 15)
    together = Examples(texts=first.texts + second.texts, labels=first.labels + second.labels,
                        categories=first.categories + second.categories)
    direct = evaluate_model_dir(tiny_artifacts, {"together": together}, ["tflite"])["together"]["tflite"]

    scored: list[int] = []
    predict_logits = SentimentModel.predict_logits

    def counting(self: SentimentModel, batch: list[str]):  # type: ignore[no-untyped-def]
        scored.append(len(batch))
        return predict_logits(self, batch)

    monkeypatch.setattr(SentimentModel, "predict_logits", counting)
    results = evaluate_model_dir(tiny_artifacts, {"a": first, "b": second, "together": together}, ["savedmodel", "tflite"])
    assert scored == [25, 15, 25, 15]  # per backend: each text once, nothing for the pooled set
    pooled = results["together"]["tflite"]
    assert {k: pooled[k] for k in ("accuracy", "n", "confusion_matrix", "by_category")} == \
        {k: direct[k] for k in ("accuracy", "n", "confusion_matrix", "by_category")}
    assert abs(pooled["ece"] - direct["ece"]) < 1e-6
    assert results["together"]["agreement"]["labels"] == pytest.approx(
        (25 * results["a"]["agreement"]["labels"] + 15 * results["b"]["agreement"]["labels"]) / 40)
