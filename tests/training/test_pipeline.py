"""train -> export -> load both backends with TensorFlow only -> same labels as PyTorch; evaluate CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import BLOCK_TORCH, ROOT
from tests.synthetic import reviews

# the single_<L> signatures of a --max-length 64 run (training/steps/export.py SINGLE_LENGTHS up to 64)
UP_TO_64 = [8, 12, 16, 20, 24, 32, 40, 48, 64]
CONTRACT = ["saved_model/saved_model.pb", "model.tflite", "tokenizer.json", "model.json", "MODEL_CARD.md",
            "confusion_matrices.png", "learning_curves.png", "pytorch/model.safetensors", "pytorch/config.json"]


def test_training_run_writes_the_whole_contract(tiny_training_run: dict[str, Path]) -> None:
    output = tiny_training_run["output"]
    for name in CONTRACT:
        assert (output / name).exists(), name
    metadata = json.loads((output / "model.json").read_text())
    assert metadata["labels"] == ["NEGATIVE", "POSITIVE"]
    assert metadata["max_length"] == 64
    assert len(metadata["version"]) == 12
    assert metadata["architecture"] == "DistilBertForSequenceClassification"
    assert metadata["training"]["data"]["train"] == 192  # 240 rows, 10 % validation, 10 % test
    assert metadata["training"]["steps"] == 4
    assert metadata["export"]["max_logit_difference"] <= 1e-4
    assert metadata["export"]["tflite_validation_agreement"]["agreement"] >= 0.99
    for backend in ("pytorch", "savedmodel", "tflite"):
        assert set(metadata["metrics"]["test"][backend]) >= {"accuracy", "precision", "recall", "f1", "n",
                                                             "confusion_matrix"}
    assert "Model card" in (output / "MODEL_CARD.md").read_text()


def test_savedmodel_signature_is_the_contract(tiny_artifacts: Path) -> None:
    import tensorflow as tf

    function = tf.saved_model.load(str(tiny_artifacts / "saved_model")).signatures["serving_default"]
    inputs = function.structured_input_signature[1]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in inputs.items()} == {
        "input_ids": (tf.int32, [None, None]), "attention_mask": (tf.int32, [None, None])}
    outputs = function.structured_outputs
    assert {k: (v.dtype, v.shape.as_list()) for k, v in outputs.items()} == {
        "logits": (tf.float32, [None, 2]), "probabilities": (tf.float32, [None, 2])}


def test_tflite_keeps_the_signature(tiny_artifacts: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tiny_artifacts / "model.tflite"))
    signatures = interpreter.get_signature_list()
    signature = signatures["serving_default"]
    assert sorted(signature["inputs"]) == ["attention_mask", "input_ids"]
    assert sorted(signature["outputs"]) == ["logits", "probabilities"]
    # fixed-shape one-text signatures up to the run's --max-length 64
    assert sorted(int(k.removeprefix("single_")) for k in signatures if k != "serving_default") == UP_TO_64
    runner = interpreter.get_signature_runner("single_32")
    assert runner.get_input_details()["input_ids"]["shape"].tolist() == [1, 32]


def test_one_text_through_a_fixed_signature_matches_fp32(tiny_artifacts: Path) -> None:
    from app.model import SentimentModel, scaled_softmax

    model = SentimentModel(tiny_artifacts, "tflite")
    assert model._run.fixed_lengths == UP_TO_64
    texts, _ = reviews(30, seed=5)
    texts += [" ".join(texts[:12])]  # longer than 64 tokens: truncated to 64, still a fixed graph
    # uncalibrated softmax (model.json's temperature would shrink or widen the differences)
    singles = scaled_softmax(np.vstack([model.predict_logits([t])[0] for t in texts]))  # one text: a single_<L> graph
    fp32 = scaled_softmax(SentimentModel(tiny_artifacts, "savedmodel").predict_logits(texts)[0])
    assert float(np.max(np.abs(singles - fp32))) < 1e-3  # (the bundled model's check is in tests/app)


def test_exported_backends_give_pytorch_labels(tiny_training_run: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from app.model import SentimentModel, scaled_softmax

    texts, _ = reviews(40, seed=99)
    final = tiny_training_run["run"] / "final_model"
    tokenizer = AutoTokenizer.from_pretrained(final)
    model = AutoModelForSequenceClassification.from_pretrained(final).eval()
    with torch.no_grad():
        batch = tokenizer(texts, truncation=True, max_length=64, padding=True, return_tensors="pt",
                          return_token_type_ids=False)
        expected = torch.softmax(model(**batch).logits, -1).numpy()
    fp32 = scaled_softmax(SentimentModel(tiny_training_run["output"], "savedmodel").predict_logits(texts)[0])
    int8 = scaled_softmax(SentimentModel(tiny_training_run["output"], "tflite").predict_logits(texts)[0])
    np.testing.assert_allclose(fp32, expected, atol=1e-4)
    assert (fp32.argmax(1) == expected.argmax(1)).all()
    assert np.mean(int8.argmax(1) == expected.argmax(1)) >= 0.95


def test_evaluate_cli_uses_only_tensorflow_and_tokenizers(tiny_training_run: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "metrics.json"
    code = (BLOCK_TORCH + "from training.cli import main; "
            f"code = main(['evaluate', '--model', {str(tiny_training_run['output'])!r}, "
            f"'--data', {str(tiny_training_run['data'])!r}, '--format', 'csv', '--backend', 'both', "
            f"'--json', {str(out)!r}]); assert 'torch' not in sys.modules; sys.exit(code)")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads(out.read_text())
    for backend in ("savedmodel", "tflite"):
        assert set(metrics[backend]) >= {"accuracy", "precision", "recall", "f1", "n"}
        assert metrics[backend]["n"] == 240


def test_resume_skips_finished_training(tiny_training_run: dict[str, Path], tiny_base: Path, tmp_path: Path) -> None:
    from training.cli import main

    before = (tiny_training_run["run"] / "final_model" / "model.safetensors").stat().st_mtime
    code = main(["train", "--data", str(tiny_training_run["data"]), "--base-model", str(tiny_base),
                 "--output", str(tmp_path / "again"), "--run-dir", str(tiny_training_run["run"]), "--max-steps", "4",
                 "--max-length", "64", "--seed", "7", "--resume"])
    assert code == 0
    assert (tiny_training_run["run"] / "final_model" / "model.safetensors").stat().st_mtime == before
    again = json.loads((tmp_path / "again" / "model.json").read_text())
    first = json.loads((tiny_training_run["output"] / "model.json").read_text())
    assert again["version"] == first["version"]


def test_two_stage_training_fine_tune_only_then_continue(tiny_training_run: dict[str, Path], tiny_base: Path,
                                                          tmp_path: Path) -> None:
    """make train-bundled's stages: --fine-tune-only writes final_model and nothing else; a second stage
    started from it keeps its trained head (not a fresh one) and writes the whole contract."""
    import torch

    from training.cli import main
    from training.config import TrainConfig
    from training.steps.finetune import load_base

    common = ["--data", str(tiny_training_run["data"]), "--max-steps", "2", "--max-length", "64",
              "--warmup-steps", "0", "--learning-rate", "1e-3", "--seed", "7"]
    stage1 = tmp_path / "stage1"
    assert main(["train", *common, "--base-model", str(tiny_base), "--output", str(stage1 / "artifacts"),
                 "--run-dir", str(stage1), "--fine-tune-only"]) == 0
    assert (stage1 / "final_model" / "model.safetensors").is_file()
    assert not (stage1 / "artifacts").exists()
    fresh, _ = load_base(TrainConfig(data=[tmp_path / "x.csv"], base_model=str(tiny_base), seed=7))
    continued, _ = load_base(TrainConfig(data=[tmp_path / "x.csv"], base_model=str(stage1 / "final_model"), seed=7))
    assert not torch.equal(continued.classifier.weight, fresh.classifier.weight)
    stage2 = tmp_path / "stage2"
    assert main(["train", *common, "--base-model", str(stage1 / "final_model"), "--output", str(stage2 / "artifacts"),
                 "--run-dir", str(stage2)]) == 0
    for name in CONTRACT:
        assert (stage2 / "artifacts" / name).exists(), name
    recorded = json.loads((stage2 / "artifacts" / "model.json").read_text())
    assert recorded["base_model"] == str(stage1 / "final_model")


def test_the_classification_head_is_seeded(tiny_base: Path, tmp_path: Path) -> None:
    """The head is initialised before the Trainer seeds anything: load_base seeds it with --seed.

    Without that, the same training command gave different weights in each process.
    """
    import torch

    from training.config import TrainConfig
    from training.steps.finetune import load_base

    heads = []
    for seed, rng in ((7, 1), (7, 2), (8, 1)):
        torch.manual_seed(rng)  # whatever state the process's RNG is in
        model, _ = load_base(TrainConfig(data=[tmp_path / "x.csv"], base_model=str(tiny_base), seed=seed))
        heads.append(model.classifier.weight.detach().clone())
    assert torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], heads[2])


def test_bad_data_stops_the_run_with_a_message(tmp_path: Path, tiny_base: Path, capsys: pytest.CaptureFixture) -> None:
    from training.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("review,score\nnice,1\n")
    code = main(["train", "--data", str(bad), "--base-model", str(tiny_base), "--output", str(tmp_path / "o")])
    assert code == 2
    assert "bad.csv" in capsys.readouterr().err


def test_version_changes_exactly_when_weights_change(tiny_training_run: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from training.steps.export import weights_version

    model = AutoModelForSequenceClassification.from_pretrained(tiny_training_run["run"] / "final_model")
    first = weights_version(model)
    assert weights_version(model) == first
    with torch.no_grad():
        model.classifier.bias[0] += 1e-3
    assert weights_version(model) != first


def test_pytorch_copy_works_with_the_transformers_pipeline(tiny_artifacts: Path) -> None:
    from transformers import pipeline

    config = json.loads((tiny_artifacts / "pytorch" / "tokenizer_config.json").read_text())
    assert config["model_input_names"] == ["input_ids", "attention_mask"]  # DistilBERT takes no token_type_ids
    outputs = pipeline("text-classification", model=str(tiny_artifacts / "pytorch"), device=-1)(["a fine kettle"])
    assert outputs[0]["label"] in ("NEGATIVE", "POSITIVE")
