"""Export of models whose embedding tables are too small for the usual int8 lookup (issue 14, item 7).

`python -m training train` on a 2-layer, 32-wide DistilBERT with a 60-token vocabulary stopped in
export with ``subgraph single_128: 0 int8 embedding tables but 1 float ones``. In the 64- and
128-token signatures a lookup reads more rows than the 60-row table has, and the converter then
dequantizes the whole table before the GATHER instead of after it; with under 1,024 weights it does
not quantize a table at all. ``float_embeddings`` handles both forms and stays strict otherwise.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_original_csv
from tests.synthetic import reviews
from tests.training.test_pipeline import CONTRACT

VOCABULARY = 60
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_small_vocabulary_base(out: Path, dim: int = 32, positions: int = 128) -> Path:
    """A random 2-layer DistilBERT with a 60-token WordPiece vocabulary (special tokens included).

    The vocabulary is the special tokens and the 55 most frequent words and punctuation marks of
    the synthetic texts; the fast tokenizer is built with the ``tokenizers`` package.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    texts, _ = reviews(400, seed=1)
    counts = collections.Counter(w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    words = [w for w, _ in counts.most_common(VOCABULARY - len(SPECIAL))]
    vocab = {token: i for i, token in enumerate(SPECIAL + words)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    backend.decoder = decoders.WordPiece()
    tokenizer = DistilBertTokenizerFast(tokenizer_object=backend, model_max_length=positions, unk_token="[UNK]",
                                        sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]",
                                        model_input_names=["input_ids", "attention_mask"])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    config = DistilBertConfig(vocab_size=len(vocab), dim=dim, n_layers=2, n_heads=2, hidden_dim=2 * dim,
                              max_position_embeddings=positions, pad_token_id=vocab["[PAD]"])
    DistilBertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def small_vocabulary_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The issue's command on the issue's model, recording what the converter handed to float_embeddings."""
    import training.steps.export
    from training.cli import main

    work = tmp_path_factory.mktemp("vocab60")
    base = build_small_vocabulary_base(work / "base")
    data = write_original_csv(work / "reviews.csv")
    conversions: list[tuple[bytes, bytes]] = []
    real = training.steps.export.float_embeddings

    def recording(quantized: bytes, fp32: bytes) -> bytes:
        conversions.append((quantized, fp32))
        return real(quantized, fp32)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training.steps.export, "float_embeddings", recording)
        code = main(["train", "--data", str(data), "--base-model", str(base), "--output", str(work / "artifacts"),
                     "--run-dir", str(work / "run"), "--max-steps", "4", "--max-length", "128", "--warmup-steps", "0",
                     "--learning-rate", "1e-3", "--seed", "7"])
    return {"code": code, "base": base, "output": work / "artifacts", "conversions": conversions}


def _gathers(content: bytes) -> dict[str, list[tuple[str, str, list[int], bool]]]:
    """Per subgraph, each GATHER of a 2-D table: (table type, table producer's op or 'constant'/'input', shape, has data)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}

    def code(op) -> int:  # type: ignore[no-untyped-def]
        entry = model.operatorCodes[op.opcodeIndex]
        return max(entry.builtinCode, entry.deprecatedBuiltinCode)

    found: dict[str, list[tuple[str, str, list[int], bool]]] = {}
    for graph in model.subgraphs:
        producers = {out: op for op in graph.operators for out in op.outputs}
        rows = found.setdefault(graph.name.decode(), [])
        for op in graph.operators:
            table = graph.tensors[op.inputs[0]]
            if code(op) != schema.BuiltinOperator.GATHER or len(table.shape) != 2:
                continue
            has_data = model.buffers[table.buffer].data is not None
            source = producers.get(op.inputs[0])
            rows.append((types[table.type], ops[code(source)] if source is not None else "constant" if has_data else "input",
                         [int(n) for n in table.shape], has_data))
    return found


def test_the_small_vocabulary_model_trains_and_exports(small_vocabulary_run: dict) -> None:
    assert small_vocabulary_run["code"] == 0
    output = small_vocabulary_run["output"]
    for name in CONTRACT:
        assert (output / name).exists(), name
    metadata = json.loads((output / "model.json").read_text())
    assert metadata["vocab_size"] == VOCABULARY
    assert metadata["max_length"] == 128
    assert metadata["export"]["tflite_validation_agreement"]["agreement"] >= 0.99


def test_the_converter_dequantizes_the_small_table_before_the_lookup(small_vocabulary_run: dict) -> None:
    """The case that broke the exporter is really exercised: not an int8 GATHER but DEQUANTIZE -> GATHER."""
    (quantized, _), = small_vocabulary_run["conversions"]
    lookups = _gathers(quantized)
    assert ("INT8", "constant", [VOCABULARY, 32], True) in lookups["single_16"]  # the usual int8 lookup
    for key in ("single_64", "single_80", "single_96", "single_128"):  # more rows read than the table has
        assert lookups[key] == [("FLOAT32", "DEQUANTIZE", [VOCABULARY, 32], False)]


def test_every_lookup_reads_the_fine_tuned_float_table(small_vocabulary_run: dict) -> None:
    from safetensors.numpy import load_file
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    output = small_vocabulary_run["output"]
    lookups = _gathers((output / "model.tflite").read_bytes())
    assert set(lookups) == {"serving_default", *(f"single_{n}" for n in (8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128))}
    for key, rows in lookups.items():
        assert rows, key
        assert all(row == ("FLOAT32", "constant", row[2], True) for row in rows), (key, rows)  # no DEQUANTIZE left
    weights = load_file(output / "pytorch" / "model.safetensors")
    word = weights["distilbert.embeddings.word_embeddings.weight"]
    assert word.shape == (VOCABULARY, 32)
    model = flatbuffer_utils.read_model(str(output / "model.tflite"))
    tables = {}
    for graph in model.subgraphs:
        for tensor in graph.tensors:
            data = model.buffers[tensor.buffer].data
            if data is not None and [int(n) for n in tensor.shape] == [VOCABULARY, 32]:
                tables.setdefault(graph.name.decode(), []).append((tensor.type, np.asarray(data).tobytes()))
    for key in lookups:  # one float32 copy of the fine-tuned table per signature, bit for bit; no int8 copy left
        assert len(tables[key]) == 1, key
        kind, data = tables[key][0]
        assert kind == schema.TensorType.FLOAT32, key
        assert np.array_equal(np.frombuffer(data, np.float32).reshape(word.shape), word), key


def _padded(tokenizer, texts: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    ids = np.zeros((len(texts), length), np.int32)
    mask = np.zeros((len(texts), length), np.int32)
    for row, encoding in enumerate(tokenizer.encode_batch(texts)):
        used = [*encoding.ids[:length - 1], encoding.ids[-1]] if len(encoding.ids) > length else encoding.ids
        ids[row, :len(used)], mask[row, :len(used)] = used, 1
    return ids, mask


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def test_int8_agrees_with_fp32_in_every_signature(small_vocabulary_run: dict) -> None:
    """Each fixed-length graph (and the dynamic one) gives fp32's labels and close probabilities."""
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tokenizers import Tokenizer

    output = small_vocabulary_run["output"]
    tokenizer = Tokenizer.from_file(str(output / "tokenizer.json"))
    fp32 = tf.saved_model.load(str(output / "saved_model")).signatures["serving_default"]
    interpreter = Interpreter(model_path=str(output / "model.tflite"))
    texts, _ = reviews(12, seed=21)
    texts += [" ".join(texts[:6]), " ".join(texts * 2)]  # over 64 tokens, and over 128 (truncated)
    worst = 0.0
    for length in (16, 32, 64, 128):
        runner = interpreter.get_signature_runner(f"single_{length}")
        for text in texts:
            ids, mask = _padded(tokenizer, [text], length)
            int8 = _softmax(runner(input_ids=ids, attention_mask=mask)["logits"])
            expected = _softmax(fp32(input_ids=tf.constant(ids), attention_mask=tf.constant(mask))["logits"].numpy())
            assert int8.argmax() == expected.argmax(), (length, text)
            worst = max(worst, float(np.max(np.abs(int8 - expected))))
    ids, mask = _padded(tokenizer, texts, 128)
    dynamic = interpreter.get_signature_runner("serving_default")
    int8 = _softmax(dynamic(input_ids=ids, attention_mask=mask)["logits"])
    expected = _softmax(fp32(input_ids=tf.constant(ids), attention_mask=tf.constant(mask))["logits"].numpy())
    assert (int8.argmax(1) == expected.argmax(1)).all()
    worst = max(worst, float(np.max(np.abs(int8 - expected))))
    assert worst < 0.02, worst  # int8 fully connected weights only; the lookups are exact


def test_tables_the_converter_left_float_need_nothing_replaced(tmp_path: Path) -> None:
    """With under 1,024 weights per table (60 x 16, 32 x 16) the converter leaves the tables float32."""
    from ai_edge_litert.interpreter import Interpreter
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    from training.steps.export import convert_to_tensorflow, save_savedmodel, save_tflite

    base = build_small_vocabulary_base(tmp_path / "base", dim=16, positions=32)
    model_dir = tmp_path / "model"
    DistilBertForSequenceClassification(DistilBertConfig.from_pretrained(base)).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(base).save_pretrained(model_dir)
    texts, _ = reviews(4, seed=2)
    tf_model, *_ = convert_to_tensorflow(model_dir, texts, 32)
    save_savedmodel(tf_model, tmp_path / "saved_model")
    save_tflite(tmp_path / "saved_model", tmp_path / "model.tflite", 32)
    lookups = _gathers((tmp_path / "model.tflite").read_bytes())
    assert set(lookups) == {"serving_default", *(f"single_{n}" for n in (8, 12, 16, 20, 24, 32))}
    assert all(row[:2] == ("FLOAT32", "constant") for rows in lookups.values() for row in rows)
    interpreter = Interpreter(model_path=str(tmp_path / "model.tflite"))
    ids = np.array([[2, 7, 8, 3] + [0] * 12], np.int32)
    logits = interpreter.get_signature_runner("single_16")(input_ids=ids, attention_mask=(ids > 0).astype(np.int32))
    assert logits["logits"].shape == (1, 2)


# Strictness: the recorded conversions of the 60-token model, altered one way at a time.

def _edit(content: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    change(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _graph(model, name: str):  # type: ignore[no-untyped-def]
    return next(g for g in model.subgraphs if g.name.decode() == name)


def _op_index(model, builtin: int) -> int:  # type: ignore[no-untyped-def]
    return next(i for i, c in enumerate(model.operatorCodes) if max(c.builtinCode, c.deprecatedBuiltinCode) == builtin)


def test_a_quantized_file_is_no_float_conversion(small_vocabulary_run: dict) -> None:
    from training.steps.export import ExportError, float_embeddings

    (quantized, _), = small_vocabulary_run["conversions"]
    with pytest.raises(ExportError, match="int8 weights"):
        float_embeddings(quantized, quantized)


def test_an_int8_lookup_must_be_followed_by_one_dequantize(small_vocabulary_run: dict) -> None:
    from tensorflow.lite.python import schema_py_generated as schema

    from training.steps.export import ExportError, float_embeddings

    (quantized, fp32), = small_vocabulary_run["conversions"]

    def replace_dequantize(model) -> None:  # type: ignore[no-untyped-def]
        graph = _graph(model, "single_16")
        dequantize, gather = _op_index(model, schema.BuiltinOperator.DEQUANTIZE), _op_index(model, schema.BuiltinOperator.GATHER)
        lookup = next(op for op in graph.operators
                      if op.opcodeIndex == gather and graph.tensors[op.inputs[0]].type == schema.TensorType.INT8)
        follower = next(op for op in graph.operators if lookup.outputs[0] in list(op.inputs))
        assert follower.opcodeIndex == dequantize
        follower.opcodeIndex = _op_index(model, schema.BuiltinOperator.ADD)

    with pytest.raises(ExportError, match="not followed by one DEQUANTIZE"):
        float_embeddings(_edit(quantized, replace_dequantize), fp32)


def test_a_dequantized_table_read_elsewhere_is_refused(small_vocabulary_run: dict) -> None:
    from tensorflow.lite.python import schema_py_generated as schema

    from training.steps.export import ExportError, float_embeddings

    (quantized, fp32), = small_vocabulary_run["conversions"]

    def second_reader(model) -> None:  # type: ignore[no-untyped-def]
        graph = _graph(model, "single_128")
        dequantize = _op_index(model, schema.BuiltinOperator.DEQUANTIZE)
        table = next(op.inputs[0] for op in graph.operators if op.opcodeIndex == dequantize
                     and [int(n) for n in graph.tensors[op.inputs[0]].shape] == [VOCABULARY, 32])
        other = next(op for op in graph.operators if op.opcodeIndex != dequantize)
        other.inputs = [*other.inputs, table]

    with pytest.raises(ExportError, match="read by more than one DEQUANTIZE"):
        float_embeddings(_edit(quantized, second_reader), fp32)


def test_tables_of_another_shape_are_refused(small_vocabulary_run: dict) -> None:
    from training.steps.export import ExportError, float_embeddings

    (quantized, fp32), = small_vocabulary_run["conversions"]

    def reshape(model) -> None:  # type: ignore[no-untyped-def]
        for tensor in _graph(model, "single_128").tensors:
            if [int(n) for n in tensor.shape] == [VOCABULARY, 32]:
                tensor.shape = np.array([VOCABULARY - 1, 32], np.int32)

    with pytest.raises(ExportError, match="embedding shapes differ"):
        float_embeddings(quantized, _edit(fp32, reshape))


def test_a_float_table_must_equal_the_float_conversions(small_vocabulary_run: dict) -> None:
    """Run on its own output every table is one 'left float': accepted if equal, refused if not."""
    from training.steps.export import ExportError, float_embeddings

    (quantized, fp32), = small_vocabulary_run["conversions"]
    once = float_embeddings(quantized, fp32)
    assert _gathers(float_embeddings(once, fp32)) == _gathers(once)

    def perturb(model) -> None:  # type: ignore[no-untyped-def]
        graph = _graph(model, "single_64")
        tensor = next(t for t in graph.tensors if [int(n) for n in t.shape] == [VOCABULARY, 32]
                      and model.buffers[t.buffer].data is not None)
        values = np.frombuffer(np.asarray(model.buffers[tensor.buffer].data).tobytes(), np.float32).copy()
        values[0] += 1.0
        model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), np.uint8)

    with pytest.raises(ExportError, match="left float differs"):
        float_embeddings(once, _edit(fp32, perturb))
