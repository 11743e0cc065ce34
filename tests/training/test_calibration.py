"""Temperature scaling, ECE and the `calibrate` command (training/steps/calibrate.py, training/commands/calibrate.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.model import scaled_softmax
from tests.conftest import BLOCK_TORCH, ROOT, write_original_csv
from training.steps.calibrate import calibration_metrics, ece, fit_temperature, nll, reliability


def calibrated_sample(n: int, seed: int = 0, spread: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Two-class logits whose softmax is the true probability of the label they are drawn with."""
    rng = np.random.default_rng(seed)
    margin = rng.normal(0.0, spread, n)  # logit of class 1 minus logit of class 0
    labels = (rng.random(n) < 1 / (1 + np.exp(-margin))).astype(int)
    return np.stack([-margin / 2, margin / 2], axis=1), labels


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_fit_recovers_the_scale_of_over_and_under_confident_logits(scale: float) -> None:
    logits, labels = calibrated_sample(20_000, seed=1)
    fit = fit_temperature(logits * scale, labels)
    assert fit["temperature"] == pytest.approx(scale, rel=0.06)
    assert fit["n"] == 20_000
    assert fit["nll_after"] < fit["nll_before"]
    assert not fit["at_bound"]
    assert fit_temperature(logits, labels)["temperature"] == pytest.approx(1.0, rel=0.06)


def test_fitted_temperature_minimises_the_nll() -> None:
    logits, labels = calibrated_sample(3_000, seed=2)
    logits = logits * 2.2
    t = fit_temperature(logits, labels)["temperature"]
    best = nll(logits, labels, t)
    for other in (t * 0.9, t * 0.97, t * 1.03, t * 1.1):
        assert nll(logits, labels, other) >= best - 1e-9


def test_ece_small_when_calibrated_large_when_over_confident() -> None:
    logits, labels = calibrated_sample(20_000, seed=3)
    assert ece(scaled_softmax(logits), labels) < 0.015
    over = logits * 3
    assert ece(scaled_softmax(over), labels) > 0.08
    t = fit_temperature(over, labels)["temperature"]
    assert ece(scaled_softmax(over, t), labels) < 0.015


def test_ece_by_hand() -> None:
    # 15 bins of width 1/15 = 0.0667. Confidences and whether the arg-max is right:
    #   0.55 right, 0.58 wrong  -> bin (0.533, 0.600]: accuracy 0.5,  confidence 0.565, gap 0.065, weight 2/5
    #   0.75 wrong              -> bin (0.733, 0.800]: accuracy 0.0,  confidence 0.75,  gap 0.75,  weight 1/5
    #   0.95 right, 0.90 right  -> bin (0.933, 1.000] and (0.867, 0.933]: gaps 0.05 and 0.10, weight 1/5 each
    # ECE = (2 * 0.065 + 0.75 + 0.05 + 0.10) / 5 = 1.03 / 5 = 0.206
    probabilities = np.array([[0.45, 0.55], [0.58, 0.42], [0.25, 0.75], [0.05, 0.95], [0.90, 0.10]])
    labels = np.array([1, 1, 0, 1, 0])
    assert ece(probabilities, labels, bins=15) == pytest.approx(0.206, abs=1e-9)
    bins = reliability(probabilities, labels, bins=15)
    assert bins["count"] == [0] * 8 + [2, 0, 0, 1, 0, 1, 1]
    assert bins["accuracy"][8] == 0.5 and bins["confidence"][8] == pytest.approx(0.565)
    # one bin: ECE is |accuracy - mean confidence|
    assert ece(probabilities, labels, bins=1) == pytest.approx(abs(3 / 5 - np.mean([0.55, 0.58, 0.75, 0.95, 0.90])))


def test_labels_and_accuracy_do_not_change() -> None:
    logits, labels = calibrated_sample(5_000, seed=4)
    logits = logits * 3
    t = fit_temperature(logits, labels)["temperature"]
    for temperature in (t, 0.3, 7.0):
        assert np.array_equal(scaled_softmax(logits, temperature).argmax(1), logits.argmax(1))
    metrics = calibration_metrics(logits, labels, t)
    accuracy = lambda key: sum(  # noqa: E731
        a * n for a, n in zip(metrics[key]["accuracy"], metrics[key]["count"], strict=True)) / len(labels)
    assert accuracy("reliability") == pytest.approx(accuracy("reliability_uncalibrated"), abs=1e-4)
    assert metrics["ece"] < metrics["ece_uncalibrated"]


def test_bad_fitting_input_is_refused() -> None:
    with pytest.raises(ValueError, match="N > 0"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))


def test_a_split_without_errors_ends_at_the_search_bound() -> None:
    logits = np.array([[-1.0, 1.0], [2.0, -2.0], [-0.5, 0.5]])
    fit = fit_temperature(logits, np.array([1, 0, 1]))
    assert fit["at_bound"] and fit["temperature"] == pytest.approx(0.05, rel=1e-3)


def test_training_run_calibrates_on_validation(tiny_training_run: dict[str, Path]) -> None:
    output = tiny_training_run["output"]
    metadata = json.loads((output / "model.json").read_text())
    entry = metadata["calibration"]
    assert entry["method"] == "temperature" and entry["fitted_on"] == "validation" and entry["backend"] == "savedmodel"
    assert entry["n"] == metadata["training"]["data"]["validation"]
    assert entry["temperature"] > 0 and entry["nll_after"] <= entry["nll_before"] + 1e-9
    for backend in ("savedmodel", "tflite"):
        test = metadata["metrics"]["test"][backend]
        assert 0 <= test["ece"] <= 1 and 0 <= test["ece_uncalibrated"] <= 1
        assert sum(test["reliability"]["count"]) == test["n"]
    card = (output / "MODEL_CARD.md").read_text()
    assert "## Calibration" in card and "ECE uncalibrated" in card and "reliability.png" in card
    assert (output / "reliability.png").stat().st_size > 1000


def test_calibrate_command_writes_the_entry_and_the_app_applies_it(tiny_artifacts: Path, tmp_path: Path) -> None:
    from app.model import SentimentModel

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, model_dir)
    fitting = write_original_csv(tmp_path / "fit.csv", n=120, seed=11)
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    write_original_csv(evaluation / "reviews.csv", n=60, seed=12)
    before = json.loads((model_dir / "model.json").read_text())
    code = (BLOCK_TORCH + "from training.cli import main; "
            f"code = main(['calibrate', '--model', {str(model_dir)!r}, '--data', {str(fitting)!r}, '--format', 'csv', "
            f"'--eval-data', {str(evaluation)!r}, '--eval-format', 'csv']); "
            "assert 'torch' not in sys.modules; sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    metadata = json.loads((model_dir / "model.json").read_text())
    entry = metadata["calibration"]
    assert entry["fitted_on"] == str(fitting) and entry["data"] == [str(fitting)]
    assert entry["n"] == 120 and entry["overlap_with_eval_sets"] == 0
    from training.data import load_examples

    fitted = SentimentModel(model_dir, "savedmodel")
    examples = load_examples([fitting], "csv")
    logits, _ = fitted.predict_logits(examples.texts)
    assert entry["temperature"] == fit_temperature(logits, np.array(examples.labels))["temperature"]  # NEGATIVE = 0
    assert before["calibration"]["fitted_on"] == "validation"
    for backend in ("savedmodel", "tflite"):
        measured = metadata["metrics"]["eval"][backend]
        assert measured["n"] == 60 and {"ece", "ece_uncalibrated", "reliability"} <= set(measured)
        assert "ece" not in metadata["metrics"]["test"][backend]  # measured with the previous T: dropped
        assert "ece_uncalibrated" in metadata["metrics"]["test"][backend]
    assert f"T = {entry['temperature']:.4f}" in (model_dir / "MODEL_CARD.md").read_text()
    assert (model_dir / "reliability.png").is_file()

    texts = [f"review number {i}" for i in range(4)] + ["great kettle", "awful kettle, broke"]
    for backend in ("savedmodel", "tflite"):
        model = SentimentModel(model_dir, backend)
        assert model.temperature == entry["temperature"]
        logits, _ = model.predict_logits(texts)
        np.testing.assert_allclose(model.predict_proba(texts)[0], scaled_softmax(logits, entry["temperature"]),
                                   atol=1e-6)


def test_calibrate_command_reports_a_missing_model_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    fitting = write_original_csv(tmp_path / "fit.csv", n=20)
    assert main(["calibrate", "--model", str(tmp_path / "nowhere"), "--data", str(fitting), "--format", "csv"]) == 2
    assert "model.json" in capsys.readouterr().err
