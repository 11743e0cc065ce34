"""The bundled model in model_artifacts/: clear reviews, both backends, end to end through the handler."""

from __future__ import annotations

import json
import re
from types import ModuleType

import pytest

from app.model import SentimentModel
from tests.app.conftest import call
from tests.conftest import BUNDLED, load_event
from tests.synthetic import CLEARLY_NEGATIVE, CLEARLY_POSITIVE

pytestmark = pytest.mark.skipif(not (BUNDLED / "model.json").is_file(), reason="no bundled model in model_artifacts/")


@pytest.fixture(scope="module")
def models() -> dict[str, SentimentModel]:
    return {backend: SentimentModel(BUNDLED, backend) for backend in ("tflite", "savedmodel")}


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_clear_reviews_get_the_right_label(models: dict[str, SentimentModel], backend: str) -> None:
    results = models[backend].predict(CLEARLY_POSITIVE + CLEARLY_NEGATIVE)
    labels = [r.label for r in results]
    assert labels == ["POSITIVE"] * len(CLEARLY_POSITIVE) + ["NEGATIVE"] * len(CLEARLY_NEGATIVE)
    assert min(r.score for r in results) > 0.8


def test_backends_agree(models: dict[str, SentimentModel]) -> None:
    texts = CLEARLY_POSITIVE + CLEARLY_NEGATIVE + ["It is a kettle.", "Arrived on Tuesday, works as described."]
    tflite, _ = models["tflite"].predict_proba(texts)
    savedmodel, _ = models["savedmodel"].predict_proba(texts)
    sure = savedmodel.max(1) >= 0.6  # a neutral text near 0.5 may fall either side; its probability may not move
    assert (tflite.argmax(1) == savedmodel.argmax(1))[sure].all()
    assert sure[:len(CLEARLY_POSITIVE + CLEARLY_NEGATIVE)].all()
    assert abs(tflite - savedmodel).max() < 0.05


def test_one_review_at_a_time_takes_a_fixed_graph_and_agrees(models: dict[str, SentimentModel]) -> None:
    tflite = models["tflite"]
    assert tflite._run.fixed_lengths == [8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128]  # its single_<L> signatures
    texts = CLEARLY_POSITIVE + CLEARLY_NEGATIVE + ["It is a kettle.", " ".join(CLEARLY_POSITIVE * 3)]
    single = [tflite.predict_proba([t])[0][0] for t in texts]
    reference = [models["savedmodel"].predict_proba([t])[0][0] for t in texts]
    for text, got, want in zip(texts, single, reference, strict=True):
        assert got.argmax() == want.argmax() or max(want) < 0.6, text  # same label unless fp32 itself is unsure
        assert abs(got - want).max() < 0.05, text


def test_metadata_describes_the_shipped_weights() -> None:
    metadata = json.loads((BUNDLED / "model.json").read_text())
    assert re.fullmatch(r"[0-9a-f]{12}", metadata["version"])
    assert metadata["labels"] == ["NEGATIVE", "POSITIVE"]
    for name, by_backend in metadata["metrics"].items():
        if name != "validation":  # sets added after training (python -m training calibrate) have no PyTorch row
            assert {"savedmodel", "tflite", "agreement"} <= set(by_backend), name
    assert "pytorch" in metadata["metrics"]["test"]
    if "calibration" in metadata:  # the scores served are softmax(logits / T) with this T
        assert metadata["calibration"]["method"] == "temperature" and metadata["calibration"]["temperature"] > 0
    assert (BUNDLED / "MODEL_CARD.md").read_text().count("|") > 20


def test_handler_end_to_end_with_the_bundled_model(bundled_handler: ModuleType, lambda_context) -> None:
    status, body, _ = call(bundled_handler, load_event("predict_single"), lambda_context)
    assert status == 200 and body["results"][0]["label"] == "POSITIVE"
    assert body["model"]["version"] == json.loads((BUNDLED / "model.json").read_text())["version"]
    status, body, _ = call(bundled_handler, load_event("predict_batch"), lambda_context)
    assert [r["label"] for r in body["results"]][:2] == ["POSITIVE", "NEGATIVE"]
    status, body, _ = call(bundled_handler, load_event("health"), lambda_context)
    assert status == 200 and body["model"]["backend"] == "tflite"


def test_pytorch_weights_agree_with_the_served_model(models: dict[str, SentimentModel]) -> None:
    from transformers import pipeline

    texts = CLEARLY_POSITIVE + CLEARLY_NEGATIVE
    outputs = pipeline("text-classification", model=str(BUNDLED / "pytorch"), device=-1)(texts)
    assert [o["label"] for o in outputs] == [r.label for r in models["savedmodel"].predict(texts)]


def test_tflite_labels_agree_with_fp32_on_evaluation_texts(models: dict[str, SentimentModel]) -> None:
    """The benchmark's agreement bar (>= 99.5 %), on its own 2,000 evaluation texts, in batches of 32."""
    from benchmarks.run import SHARED_EVAL, load_texts

    if not SHARED_EVAL.is_dir():
        pytest.skip(f"needs the shared evaluation data at {SHARED_EVAL}")
    texts = load_texts(2000)[0]["agreement"]
    labels = {}
    for backend, model in models.items():
        labels[backend] = [int(p.argmax()) for i in range(0, len(texts), 32)
                           for p in model.predict_proba(texts[i : i + 32])[0]]
    agreement = sum(a == b for a, b in zip(labels["tflite"], labels["savedmodel"], strict=True)) / len(texts)
    assert agreement >= 0.995


def test_bundled_model_answers_stars_four_way_and_sentences(bundled_handler: ModuleType, lambda_context) -> None:
    """The shipped model has a star head and four-way rules: clear reviews get clear answers, and sentences
    come back with offsets into the text."""
    metadata = json.loads((BUNDLED / "model.json").read_text())
    if "four_way" not in metadata:
        pytest.skip("the bundled model has no star head")
    event = load_event("predict_batch")
    event["body"] = json.dumps({"texts": CLEARLY_POSITIVE[:2] + CLEARLY_NEGATIVE[:2]})
    status, body, _ = call(bundled_handler, event, lambda_context)
    assert status == 200
    results = body["results"]
    assert [r["sentiment"] for r in results] == ["POSITIVE", "POSITIVE", "NEGATIVE", "NEGATIVE"]
    assert all(r["stars"] >= 4.0 for r in results[:2]) and all(r["stars"] <= 2.0 for r in results[2:])
    status, body, _ = call(bundled_handler, load_event("predict_sentences"), lambda_context)
    text = json.loads(load_event("predict_sentences")["body"])["text"]
    sentences = body["results"][0]["sentences"]
    assert status == 200 and [text[s["start"]:s["end"]] for s in sentences] == [
        "Five stars for the fast shipping.",
        "The product itself broke after two days, but the seller refunded me quickly."]
    assert sentences[0]["label"] == "POSITIVE"
