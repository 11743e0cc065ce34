"""Export details: the forward pass both artifacts run, float32 embedding tables, and `python -m training export`
(re-export without training)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import reviews


def _embedding_tables(path: Path) -> list[tuple[str, int, list[int]]]:
    """(subgraph, table type, table shape) of every GATHER whose table is a constant, and the op names used."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.GATHER:
                continue
            table = graph.tensors[op.inputs[0]]
            if model.buffers[table.buffer].data is not None and table.type != schema.TensorType.INT32:
                found.append((graph.name.decode(), table.type, [int(n) for n in table.shape]))
    return found


def test_embedding_tables_stay_float32(tiny_artifacts: Path) -> None:
    from tensorflow.lite.python import schema_py_generated as schema

    tables = _embedding_tables(tiny_artifacts / "model.tflite")
    vocabulary = json.loads((tiny_artifacts / "model.json").read_text())["vocab_size"]
    # token embeddings in every signature (position embeddings too in the dynamic one), none int8
    assert {graph for graph, _, _ in tables} == {"serving_default", *(f"single_{n}" for n in (8, 12, 16, 20, 24, 32, 40, 48, 64))}
    assert [vocabulary, 32] in [shape for _, _, shape in tables]
    assert {kind for _, kind, _ in tables} == {schema.TensorType.FLOAT32}


def test_the_exported_forward_gives_the_full_models_logits(tiny_artifacts: Path) -> None:
    """classifier_logits (what both artifacts run) equals the Keras model's own forward pass, padding included."""
    import tensorflow as tf
    from transformers import TFDistilBertForSequenceClassification

    from training.steps.export import classifier_logits

    model = TFDistilBertForSequenceClassification.from_pretrained(tiny_artifacts / "pytorch", from_pt=True)
    rng = np.random.default_rng(0)
    ids = rng.integers(5, model.config.vocab_size, (4, 24)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 10:], mask[2, 3:] = 0, 0  # padded rows: the masked positions must not leak into [CLS]
    full = model(input_ids=ids, attention_mask=mask, training=False).logits.numpy()
    pruned = classifier_logits(model, tf.constant(ids), tf.constant(mask)).numpy()
    assert float(np.max(np.abs(pruned - full))) < 1e-5
    one = classifier_logits(model, tf.constant(ids[1:2, :10]), tf.constant(mask[1:2, :10])).numpy()
    assert float(np.max(np.abs(one - full[1:2]))) < 1e-5  # unpadded, as a one-review request runs


def test_the_last_layer_runs_for_the_first_position_only(tiny_artifacts: Path) -> None:
    """In a single_<L> graph every fully connected layer reads L positions, except in the last transformer
    layer: there only the key and value projections do; query, output, feed-forward and the classifier read one."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    layers = json.loads((tiny_artifacts / "pytorch" / "config.json").read_text())["n_layers"]
    model = flatbuffer_utils.read_model(str(tiny_artifacts / "model.tflite"))
    graph = next(g for g in model.subgraphs if g.name == b"single_32")
    positions = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.FULLY_CONNECTED:
            positions.append(int(np.prod(graph.tensors[op.inputs[0]].shape[:-1])))
    # 6 per layer (q, k, v, out, 2 x feed-forward), then pre-classifier and classifier
    assert sorted(positions) == [1] * 6 + [32] * (6 * (layers - 1) + 2)


def test_float_tables_are_the_fp32_weights(tiny_artifacts: Path) -> None:
    """The tables are the model's own float weights: the token embeddings equal the fine-tuned ones exactly."""
    from safetensors.numpy import load_file
    from tensorflow.lite.tools import flatbuffer_utils

    word = load_file(tiny_artifacts / "pytorch" / "model.safetensors")["distilbert.embeddings.word_embeddings.weight"]
    model = flatbuffer_utils.read_model(str(tiny_artifacts / "model.tflite"))
    shaped = [np.frombuffer(np.asarray(b.data).tobytes(), np.float32).reshape(word.shape) for b in model.buffers
              if b.data is not None and len(b.data) == word.size * 4]
    assert any(np.array_equal(table, word) for table in shaped)


def test_float_embeddings_refuses_conversions_of_different_graphs(tiny_artifacts: Path) -> None:
    from training.steps.export import ExportError, float_embeddings

    content = (tiny_artifacts / "model.tflite").read_bytes()
    with pytest.raises(ExportError, match="embedding tables"):
        float_embeddings(content, content)  # no int8 tables left to match the float ones


def test_reexport_rebuilds_both_artifacts_and_remeasures(tiny_training_run: dict[str, Path], tmp_path: Path) -> None:
    from app.model import SentimentModel
    from training.cli import main

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model_dir)
    before = json.loads((model_dir / "model.json").read_text())
    (model_dir / "model.tflite").write_bytes(b"stale")  # whatever was there is replaced
    shutil.rmtree(model_dir / "saved_model" / "variables")
    assert main(["export", "--model", str(model_dir)]) == 0
    after = json.loads((model_dir / "model.json").read_text())
    assert after["version"] == before["version"]
    assert after["export"]["reexported"]
    assert after["export"]["tflite_validation_agreement"] == before["export"]["tflite_validation_agreement"]
    assert after["metrics"]["test"]["tflite"] == before["metrics"]["test"]["tflite"]  # same exporter, same split
    assert after["metrics"]["test"]["savedmodel"] == before["metrics"]["test"]["savedmodel"]
    assert after["metrics"]["test"]["pytorch"] == before["metrics"]["test"]["pytorch"]  # untouched
    assert "rebuilt from the same weights" in (model_dir / "MODEL_CARD.md").read_text()
    texts, _ = reviews(10, seed=3)
    fp32 = SentimentModel(model_dir, "savedmodel").predict_proba(texts)[0]
    int8 = SentimentModel(model_dir, "tflite").predict_proba(texts)[0]
    assert float(np.max(np.abs(fp32 - int8))) < 0.05
    assert not (model_dir / "model.tflite.previous").exists()
    assert not (model_dir / "saved_model.previous").exists()


def test_reexport_that_fails_leaves_the_model_as_it_was(tiny_training_run: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import training.commands.export
    from training.steps.export import ExportError

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model_dir)
    original = (model_dir / "model.tflite").read_bytes()
    graph = (model_dir / "saved_model" / "saved_model.pb").read_bytes()

    def refuse(output: Path, texts: list[str]) -> dict:
        raise ExportError("agrees on only 50 %")

    monkeypatch.setattr(training.commands.export, "check_tflite_agreement", refuse)
    with pytest.raises(ExportError):
        training.commands.export.reexport(model_dir)
    assert (model_dir / "model.tflite").read_bytes() == original
    assert (model_dir / "saved_model" / "saved_model.pb").read_bytes() == graph
    assert not (model_dir / "model.tflite.previous").exists()
    assert not (model_dir / "saved_model.previous").exists()


def test_reexport_refuses_weights_of_another_version(tiny_training_run: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model_dir)
    metadata = json.loads((model_dir / "model.json").read_text())
    metadata["version"] = "0123456789ab"
    (model_dir / "model.json").write_text(json.dumps(metadata))
    original = (model_dir / "model.tflite").read_bytes()
    assert main(["export", "--model", str(model_dir)]) != 0
    assert "0123456789ab" in capsys.readouterr().err
    assert (model_dir / "model.tflite").read_bytes() == original


def test_reexport_without_its_data_says_so(tiny_training_run: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model_dir)
    metadata = json.loads((model_dir / "model.json").read_text())
    metadata["training"]["config"]["data"] = [str(tmp_path / "gone.csv")]
    (model_dir / "model.json").write_text(json.dumps(metadata))
    assert main(["export", "--model", str(model_dir)]) == 2
    assert "gone.csv" in capsys.readouterr().err
