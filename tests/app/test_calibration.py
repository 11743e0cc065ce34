"""model.json's calibration entry: softmax(logits / T) for both backends, labels unchanged, bad entries refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.model import ModelLoadError, SentimentModel, cut_ids, scaled_softmax
from tests.app.conftest import call, load_handler
from tests.conftest import load_event
from tests.synthetic import reviews


@pytest.fixture
def artifacts_copy(tiny_artifacts: Path, tmp_path: Path) -> Path:
    target = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, target)
    return target


def set_calibration(model_dir: Path, entry: object) -> None:
    metadata = json.loads((model_dir / "model.json").read_text())
    if entry is None:
        metadata.pop("calibration", None)
    else:
        metadata["calibration"] = entry
    (model_dir / "model.json").write_text(json.dumps(metadata))


def texts() -> list[str]:
    sample, _ = reviews(24, seed=21)
    return [*sample, "short", " ".join(sample[:10])]  # one truncated


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_without_an_entry_scores_are_the_graphs_probabilities(artifacts_copy: Path, backend: str) -> None:
    # Older artifact directories (no "calibration") keep today's behaviour: the exported graph's own softmax.
    set_calibration(artifacts_copy, None)
    model = SentimentModel(artifacts_copy, backend)
    assert model.temperature == 1.0
    if backend == "savedmodel":
        import tensorflow as tf

        function = tf.saved_model.load(str(artifacts_copy / "saved_model")).signatures["serving_default"]
        graph = lambda ids, mask: function(input_ids=tf.constant(ids), attention_mask=tf.constant(mask))  # noqa: E731
        graph_probabilities = lambda ids, mask: graph(ids, mask)["probabilities"].numpy()  # noqa: E731
    else:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(artifacts_copy / "model.tflite")).get_signature_runner("serving_default")
        graph_probabilities = lambda ids, mask: runner(input_ids=ids, attention_mask=mask)["probabilities"]  # noqa: E731
    batch = texts()
    ours, _ = model.predict_proba(batch)
    for row, text in enumerate(batch):
        ids, mask = model._arrays([cut_ids(model.tokenizer.encode(text).ids, model.max_length, model.head)])
        np.testing.assert_allclose(ours[row], graph_probabilities(ids, mask)[0], atol=1e-5)


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
@pytest.mark.parametrize("temperature", [0.2, 3.0])
def test_temperature_rescales_scores_and_keeps_labels(artifacts_copy: Path, backend: str, temperature: float) -> None:
    set_calibration(artifacts_copy, None)
    plain = SentimentModel(artifacts_copy, backend)
    set_calibration(artifacts_copy, {"method": "temperature", "temperature": temperature, "fitted_on": "validation",
                                     "n": 24, "nll_before": 0.69, "nll_after": 0.69})
    calibrated = SentimentModel(artifacts_copy, backend)
    assert calibrated.temperature == temperature
    batch = texts()
    logits, _ = plain.predict_logits(batch)
    np.testing.assert_array_equal(calibrated.predict_logits(batch)[0], logits)  # the temperature is not in the graph
    before, after = plain.predict_proba(batch)[0], calibrated.predict_proba(batch)[0]
    np.testing.assert_allclose(after, scaled_softmax(logits, temperature), atol=1e-6)
    # the scores did move: every log-odds is the uncalibrated one divided by T (the tiny model's logits sit near 0,
    # so an absolute threshold on the probabilities would depend on its random initialisation)
    log_odds_before = np.log(before[:, 1]) - np.log(before[:, 0])
    log_odds_after = np.log(after[:, 1]) - np.log(after[:, 0])
    assert float(np.max(np.abs(log_odds_before))) > 1e-4
    np.testing.assert_allclose(log_odds_after * temperature, log_odds_before, rtol=0.05, atol=2e-5)
    assert [p.label for p in calibrated.predict(batch)] == [p.label for p in plain.predict(batch)]
    singles = np.vstack([calibrated.predict_proba([t])[0] for t in batch])  # one text: tflite's single_<L> graphs
    np.testing.assert_allclose(singles, after, atol=1e-4)
    # sharper (T < 1) or flatter (T > 1) than the uncalibrated scores, around 0.5
    spread_before, spread_after = np.abs(before[:, 1] - 0.5), np.abs(after[:, 1] - 0.5)
    assert np.all(spread_after >= spread_before - 1e-6) if temperature < 1 else np.all(spread_after <= spread_before + 1e-6)


def test_handler_responses_carry_the_calibrated_score(artifacts_copy: Path, lambda_context: object) -> None:
    set_calibration(artifacts_copy, {"method": "temperature", "temperature": 0.25, "fitted_on": "validation", "n": 24,
                                     "nll_before": 0.69, "nll_after": 0.69})
    event = load_event("predict_single")
    text = json.loads(event["body"])["text"]
    with pytest.MonkeyPatch.context() as mp:
        handler = load_handler(mp, artifacts_copy, "tflite")
        status, body, _ = call(handler, event, lambda_context)
    assert status == 200
    model = SentimentModel(artifacts_copy, "tflite")
    expected = scaled_softmax(model.predict_logits([text])[0], 0.25)[0]
    assert body["results"][0]["score"] == pytest.approx(float(expected.max()), abs=1e-5)


@pytest.mark.parametrize("entry", [
    {"method": "temperature", "temperature": 0},
    {"method": "temperature", "temperature": -1.5},
    {"method": "temperature", "temperature": "1.2"},
    {"method": "temperature", "temperature": None},
    {"method": "temperature", "temperature": True},
    {"method": "temperature", "temperature": float("nan")},
    {"method": "temperature", "temperature": float("inf")},
    {"method": "temperature"},
])
def test_a_bad_temperature_stops_the_load_naming_model_json(artifacts_copy: Path, entry: dict) -> None:
    set_calibration(artifacts_copy, entry)
    with pytest.raises(ModelLoadError, match=r"model\.json: 'calibration\.temperature' must be a positive number"):
        SentimentModel(artifacts_copy, "tflite")


@pytest.mark.parametrize("entry", [1.3, [1.3], {"method": "isotonic", "temperature": 1.3}, {"temperature": 1.3}])
def test_an_entry_of_another_shape_stops_the_load(artifacts_copy: Path, entry: object) -> None:
    set_calibration(artifacts_copy, entry)
    with pytest.raises(ModelLoadError, match=r"model\.json: 'calibration' must be an object with \"method\""):
        SentimentModel(artifacts_copy, "savedmodel")


def test_scaled_softmax() -> None:
    logits = np.array([[0.0, 0.0], [1.0, -1.0], [1000.0, 0.0]], dtype=np.float32)  # the last would overflow exp
    np.testing.assert_allclose(scaled_softmax(logits), [[0.5, 0.5], [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(2))],
                                                        [1.0, 0.0]], atol=1e-7)
    np.testing.assert_allclose(scaled_softmax(logits, 2.0)[1], [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))], atol=1e-7)
    assert scaled_softmax(logits).dtype == np.float32
