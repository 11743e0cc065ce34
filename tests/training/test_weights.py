"""Training options that decide the exported weights: --frozen-embeddings and --average-checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import write_original_csv

WORD = "distilbert.embeddings.word_embeddings.weight"


def _weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


@pytest.fixture(scope="module")
def embedding_source(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """tiny_base with a word-embedding table of its own (as a previous model's would be)."""
    from transformers import AutoModel

    out = tmp_path_factory.mktemp("embedding_source")
    shutil.copytree(tiny_base, out, dirs_exist_ok=True)
    model = AutoModel.from_pretrained(out)
    table = model.get_input_embeddings().weight
    table.data = table.data + 0.5  # far from the base's table: a copy is told apart from no copy
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path, embedding_source: Path) -> dict[str, Path]:
    from training.cli import main

    work = tmp_path_factory.mktemp("two_epoch_run")
    data = write_original_csv(work / "reviews.csv")
    output = work / "artifacts"
    code = main(["train", "--data", str(data), "--base-model", str(tiny_base), "--output", str(output),
                 "--run-dir", str(work / "run"), "--epochs", "2", "--min-epochs", "2", "--max-length", "64",
                 "--warmup-steps", "0", "--learning-rate", "1e-3", "--seed", "7",
                 "--frozen-embeddings", str(embedding_source), "--average-checkpoints"])
    assert code == 0
    return {"output": output, "run": work / "run", "data": data}


def test_frozen_table_is_exported_bit_for_bit(two_epoch_run: dict[str, Path], embedding_source: Path,
                                              tiny_base: Path) -> None:
    from tensorflow.lite.tools import flatbuffer_utils

    source, base = _weights(embedding_source), _weights(tiny_base)
    exported = _weights(two_epoch_run["output"] / "pytorch")
    table = source["embeddings.word_embeddings.weight"]
    assert np.array_equal(exported[WORD], table)
    assert exported[WORD].tobytes() == table.tobytes()
    # the other layers did train
    assert not np.allclose(exported["distilbert.transformer.layer.0.ffn.lin1.weight"],
                           base["transformer.layer.0.ffn.lin1.weight"])
    # and the TFLite file carries the same float32 table (the one the app serves)
    model = flatbuffer_utils.read_model(str(two_epoch_run["output"] / "model.tflite"))
    assert any(b.data is not None and np.asarray(b.data).tobytes() == table.tobytes() for b in model.buffers)
    config = json.loads((two_epoch_run["output"] / "model.json").read_text())["training"]["config"]
    assert config["frozen_embeddings"] == str(embedding_source)
    assert "kept fixed during training" in (two_epoch_run["output"] / "MODEL_CARD.md").read_text()


def test_averaging_decision_is_recorded_and_matches_the_weights(two_epoch_run: dict[str, Path]) -> None:
    from training.steps.finetune import kept_checkpoints

    metadata = json.loads((two_epoch_run["output"] / "model.json").read_text())
    record = metadata["training"]["checkpoint_average"]
    checkpoints = kept_checkpoints(two_epoch_run["run"])
    assert record["checkpoints"] == [p.name for p in checkpoints] and len(checkpoints) == 2
    assert record["used"] == (record["validation_loss"] <= record["best_checkpoint_validation_loss"])
    assert 0.0 <= record["validation_accuracy"] <= 1.0  # the Trainer's compute_metrics ran on the average
    exported = _weights(two_epoch_run["output"] / "pytorch")
    states = [_weights(p) for p in checkpoints]
    name = "distilbert.transformer.layer.1.attention.q_lin.weight"
    if record["used"]:
        expected = (states[0][name].astype(np.float64) + states[1][name]) / 2
        assert np.allclose(exported[name], expected, atol=1e-6)
        assert "so the average is the exported model" in (two_epoch_run["output"] / "MODEL_CARD.md").read_text()
    else:
        assert any(np.array_equal(exported[name], s[name]) for s in states)
    assert exported[WORD].tobytes() == states[0][WORD].tobytes() == states[1][WORD].tobytes()


def test_vocabulary_mismatch_is_refused(tmp_path: Path, tiny_base: Path, capsys: pytest.CaptureFixture) -> None:
    from transformers import DistilBertTokenizerFast

    from training.cli import main

    other = tmp_path / "other"
    shutil.copytree(tiny_base, other)
    vocabulary = (other / "vocab.txt").read_text().splitlines()
    (other / "vocab.txt").write_text("\n".join([*vocabulary[:-1], "zzzunseen"]) + "\n")
    (other / "tokenizer.json").unlink()
    DistilBertTokenizerFast(vocab_file=str(other / "vocab.txt")).save_pretrained(other)
    data = write_original_csv(tmp_path / "reviews.csv", n=60)
    code = main(["train", "--data", str(data), "--base-model", str(tiny_base), "--output", str(tmp_path / "out"),
                 "--run-dir", str(tmp_path / "run"), "--max-steps", "1", "--frozen-embeddings", str(other)])
    assert code == 2
    assert "vocabulary differs" in capsys.readouterr().err


class _StubTrainer:
    """The two things average_checkpoints asks of a Trainer: its device, and a validation loss."""

    def __init__(self, loss: float) -> None:
        self.args = SimpleNamespace(device="cpu")
        self.loss = loss
        self.model = None

    def evaluate(self) -> dict[str, float]:
        return {"eval_loss": self.loss}


@pytest.fixture
def two_checkpoints(tmp_path: Path, tiny_base: Path) -> SimpleNamespace:
    """A run directory with two checkpoints of a classifier whose weights differ, and a log history."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    dirs = []
    for step in (6, 12):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_base, num_labels=2)
        directory = tmp_path / "run" / "checkpoints" / f"checkpoint-{step}"
        model.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        dirs.append(directory)
    config = SimpleNamespace(run_dir=tmp_path / "run")
    log = [{"epoch": 1.0, "eval_loss": 0.40}, {"epoch": 2.0, "eval_loss": 0.30}]
    return SimpleNamespace(config=config, dirs=dirs, log=log)


def test_average_is_used_when_no_worse(two_checkpoints: SimpleNamespace) -> None:
    from training.steps.finetune import average_checkpoints

    chosen, record = average_checkpoints(two_checkpoints.config, _StubTrainer(0.30), two_checkpoints.log,
                                         two_checkpoints.dirs[1])
    assert chosen == two_checkpoints.config.run_dir / "averaged_model"
    assert record == {"checkpoints": ["checkpoint-6", "checkpoint-12"], "used": True, "validation_loss": 0.3,
                      "best_checkpoint_validation_loss": 0.3}
    first, second, averaged = (_weights(p) for p in (*two_checkpoints.dirs, chosen))
    assert set(averaged) == set(first)
    for name in first:
        assert np.allclose(averaged[name], (first[name].astype(np.float64) + second[name]) / 2, atol=1e-6), name
    assert not np.allclose(first["classifier.weight"], second["classifier.weight"])  # the test can fail
    assert (chosen / "tokenizer.json").is_file()


def test_best_checkpoint_kept_when_the_average_is_worse(two_checkpoints: SimpleNamespace) -> None:
    from training.steps.finetune import average_checkpoints

    best = two_checkpoints.dirs[1]
    chosen, record = average_checkpoints(two_checkpoints.config, _StubTrainer(0.31), two_checkpoints.log, best)
    assert chosen == best and record["used"] is False
    assert record["validation_loss"] == 0.31 and record["best_checkpoint_validation_loss"] == 0.3
    assert not (two_checkpoints.config.run_dir / "averaged_model").exists()


def test_one_checkpoint_means_nothing_to_average(two_checkpoints: SimpleNamespace) -> None:
    from training.steps.finetune import average_checkpoints

    shutil.rmtree(two_checkpoints.dirs[0])
    trainer = _StubTrainer(0.0)
    chosen, record = average_checkpoints(two_checkpoints.config, trainer, two_checkpoints.log,
                                         two_checkpoints.dirs[1])
    assert chosen == two_checkpoints.dirs[1] and record["used"] is False
    assert record["reason"] == "1 checkpoint(s) kept: nothing to average"
    assert trainer.model is None  # nothing was evaluated
