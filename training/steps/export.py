"""PyTorch -> TensorFlow (``from_pt=True``) -> SavedModel + dynamic-range int8 TFLite + tokenizer.json."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

LOGIT_TOLERANCE = 1e-4
MIN_TFLITE_AGREEMENT = 0.99
PROBE_TEXTS = (
    "This is the best purchase I have made all year, it works perfectly.",
    "Terrible. It broke after two days and support never answered.",
    "ok",
    "The software installs fine but crashes whenever I open a large file, which is frustrating.",
    "I expected more for the price; still, the battery life is decent and it looks nice.",
    "Five stars! Fast shipping, great quality, would buy again.",
    "Do not waste your money on this junk.",
    "It does what it says.",
)


class ExportError(RuntimeError):
    """The exported model does not reproduce the fine-tuned one closely enough."""


def weights_version(model) -> str:  # type: ignore[no-untyped-def]
    """A short hash of the PyTorch weights: it changes exactly when the weights change."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def _pytorch_logits(model, tokenizer, texts: list[str], max_length: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    batch = tokenizer(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                      return_token_type_ids=False)
    with torch.no_grad():
        return model(**batch).logits.numpy()


def convert_to_tensorflow(model_dir: Path, probe_texts: list[str], max_length: int):  # type: ignore[no-untyped-def]
    """Load the fine-tuned PyTorch weights into the TF class and check the logits agree."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TFAutoModelForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pt_model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tf_model = TFAutoModelForSequenceClassification.from_pretrained(model_dir, from_pt=True)
    batch = tokenizer(probe_texts, truncation=True, max_length=max_length, padding=True, return_tensors="np",
                      return_token_type_ids=False)
    # The exported graphs' own forward pass (classifier_logits), so the check covers what ships.
    tf_logits = classifier_logits(tf_model, batch["input_ids"], batch["attention_mask"]).numpy()
    pt_logits = _pytorch_logits(pt_model, tokenizer, probe_texts, max_length)
    difference = float(np.max(np.abs(tf_logits - pt_logits)))
    if difference > LOGIT_TOLERANCE:
        raise ExportError(f"TensorFlow logits differ from PyTorch by {difference:.2e} (> {LOGIT_TOLERANCE}) on the probe set")
    logger.info("PyTorch -> TensorFlow: max logit difference %.2e on %d probe texts", difference, len(probe_texts))
    return tf_model, tokenizer, pt_model, difference


# Fine steps where one-review requests are most common (an eval-set review's median is ~22 tokens), so that a
# text is padded by a few tokens rather than up to twice its length. Each signature costs ~0.35 MB of file and
# ~12 MB of memory at run time (the interpreter packs the weights once per signature): docs/benchmark.md.
SINGLE_LENGTHS = (8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128)


RATING_HEAD_FILE = "rating_head.npz"  # beside the PyTorch weights: the star head (training.steps.rating)


def read_rating_head(model_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(weight [5, dim], bias [5]) of ``model_dir/rating_head.npz``, or None when the model has no star head."""
    path = model_dir / RATING_HEAD_FILE
    if not path.is_file():
        return None
    with np.load(path) as data:
        weight, bias = data["weight"].astype(np.float32), data["bias"].astype(np.float32)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ExportError(f"{path}: weight {weight.shape} and bias {bias.shape} are not a linear head")
    return weight, bias


def export_artifacts(model_dir: Path, output: Path, validation_texts: list[str], max_length: int):  # type: ignore[no-untyped-def]
    """``output/saved_model`` and ``output/model.tflite`` from the PyTorch weights in ``model_dir``.

    A ``rating_head.npz`` beside the weights adds the ``star_logits`` output to both artifacts.
    Returns (tokenizer, PyTorch model, max logit difference) of the conversion check, whose probe is
    PROBE_TEXTS plus the first 24 validation texts.
    """
    probe = list(PROBE_TEXTS) + validation_texts[:24]
    tf_model, tokenizer, pt_model, difference = convert_to_tensorflow(model_dir, probe, max_length)
    save_savedmodel(tf_model, output / "saved_model", read_rating_head(model_dir))
    save_tflite(output / "saved_model", output / "model.tflite", max_length)
    return tokenizer, pt_model, difference


def classifier_logits(model, input_ids, attention_mask):  # type: ignore[no-untyped-def]
    """The logits of a ``TFDistilBertForSequenceClassification`` (see ``classifier_features``)."""
    return model.classifier(classifier_features(model, input_ids, attention_mask))


def classifier_features(model, input_ids, attention_mask):  # type: ignore[no-untyped-def]
    """The classifier's input, ReLU(pre_classifier([CLS])), of a ``TFDistilBertForSequenceClassification``.

    The logits of a ``TFDistilBertForSequenceClassification``, computing in the last layer only what they read.

    The classifier reads the last layer's output at the first ([CLS]) position alone. Every operation
    after the last attention's key and value projections works per position, so the last layer runs
    its query projection, attention, output projection, layer norms and feed-forward network for that
    position only: the same logits (to float rounding) for ~14 % fewer multiply-adds (6 layers; more
    the longer the text). The key and value projections still read every position.
    """
    import tensorflow as tf

    body = model.distilbert
    mask = tf.cast(attention_mask, tf.float32)
    hidden = body.embeddings(input_ids=input_ids, training=False)
    *layers, last = body.transformer.layer
    for layer in layers:
        hidden = layer(hidden, mask, None, False, training=False)[-1]
    first = hidden[:, :1]
    attended = last.attention(first, hidden, hidden, mask, None, False, training=False)[0]
    attended = last.sa_layer_norm(attended + first)
    first = last.output_layer_norm(last.ffn(attended, training=False) + attended)
    return model.pre_classifier(first[:, 0])  # a Dense with ReLU activation


def single_lengths(max_length: int) -> list[int]:
    """Sequence lengths of the fixed-shape one-text signatures: the buckets below max_length, and max_length."""
    return sorted({n for n in SINGLE_LENGTHS if n < max_length} | {max_length})


def save_savedmodel(tf_model, path: Path, rating_head: tuple[np.ndarray, np.ndarray] | None = None) -> None:  # type: ignore[no-untyped-def]
    """SavedModel whose serving_default signature is the artifact contract's.

    With ``rating_head`` (weight [5, dim], bias [5]) it also outputs ``star_logits``, computed from the
    binary classifier's own input in the same pass: the binary logits are computed exactly as without it.
    """
    import tensorflow as tf

    class Serving(tf.Module):
        def __init__(self, model) -> None:  # type: ignore[no-untyped-def]
            super().__init__()
            self.model = model
            if rating_head is not None:
                self.star_weight = tf.Variable(rating_head[0].T, trainable=False, name="star_weight")
                self.star_bias = tf.Variable(rating_head[1], trainable=False, name="star_bias")

        @tf.function(input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="input_ids"),
            tf.TensorSpec([None, None], tf.int32, name="attention_mask"),
        ])
        def serve(self, input_ids, attention_mask):  # type: ignore[no-untyped-def]
            features = classifier_features(self.model, input_ids, attention_mask)
            logits = self.model.classifier(features)
            outputs = {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}
            if rating_head is not None:
                outputs["star_logits"] = tf.matmul(features, self.star_weight) + self.star_bias
            return outputs

    module = Serving(tf_model)
    if path.exists():
        shutil.rmtree(path)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def save_tflite(saved_model: Path, path: Path, max_length: int | None = None) -> None:
    """Dynamic-range quantization: int8 weights, float activations; the signatures are kept.

    With ``max_length`` the file also gets ``single_<L>`` signatures: the SavedModel's function for
    one text padded to L tokens. Static shapes let the converter fold away the dynamic-shape
    operators (601 -> 271 for the 6-layer model): one-review requests run faster. Weights are shared
    between signatures (each adds ~0.35 MB to the file).

    The embedding tables stay float32 (see ``float_embeddings``): the converter quantizes them with
    one scale for the whole table, the largest single source of int8-vs-fp32 label flips.
    """
    import tempfile

    import tensorflow as tf

    source = str(saved_model)
    keys = ["serving_default"]
    with tempfile.TemporaryDirectory() as staging:
        if max_length:
            loaded = tf.saved_model.load(source)
            serving = loaded.signatures["serving_default"]
            signatures = {}
            for length in [None, *single_lengths(max_length)]:
                shape = [None, None] if length is None else [1, length]
                spec = [tf.TensorSpec(shape, tf.int32, name="input_ids"),
                        tf.TensorSpec(shape, tf.int32, name="attention_mask")]
                key = "serving_default" if length is None else f"single_{length}"
                signatures[key] = tf.function(
                    lambda input_ids, attention_mask: serving(input_ids=input_ids, attention_mask=attention_mask),
                    input_signature=spec).get_concrete_function()
            holder = tf.Module()
            holder.loaded = loaded
            tf.saved_model.save(holder, staging, signatures=signatures)
            source, keys = staging, list(signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(source, signature_keys=keys)
        fp32 = converter.convert()
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        int8 = converter.convert()
    path.write_bytes(float_embeddings(int8, fp32))


def float_embeddings(quantized: bytes, fp32: bytes) -> bytes:
    """``quantized`` with its int8 embedding tables replaced by the float32 ones of ``fp32``.

    Dynamic-range quantization gives fully connected weights one scale per output channel, but a
    GATHER table (token and position embeddings) one scale for the whole table. On the bundled model
    keeping them float halved the largest probability difference against fp32 (0.19 -> 0.10) and
    removed 5 of 12 label flips on 2,000 texts. Each table of ``quantized`` is read by a GATHER in
    one of three ways, and is matched in graph order with the float32 table of the same GATHER in
    ``fp32`` (the same signatures converted without quantization):

    - int8 table -> GATHER -> DEQUANTIZE (the usual form): the GATHER reads the float32 table and
      the DEQUANTIZE is dropped. Only the rows a text uses are read, so the cost is file size
      (+4 bytes x vocabulary x hidden), not compute.
    - int8 table -> DEQUANTIZE -> GATHER: the converter dequantizes the whole table first when a
      lookup reads more rows than the table has (a 60-token vocabulary in a 64- or 128-token
      signature). The DEQUANTIZE is dropped and the GATHER reads the float32 table.
    - float32 table -> GATHER: a table the converter did not quantize; it must equal the float32
      conversion's, and there is nothing to replace.

    Anything else (a table whose shape or weights differ, an int8 lookup not followed by exactly one
    DEQUANTIZE, an ``fp32`` that holds int8 weights) raises ExportError.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    int8_model = flatbuffer_utils.convert_bytearray_to_object(bytearray(quantized))
    float_model = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp32))
    gather, dequantize = schema.BuiltinOperator.GATHER, schema.BuiltinOperator.DEQUANTIZE
    int8, float32 = schema.TensorType.INT8, schema.TensorType.FLOAT32

    def op_code(model, op) -> int:  # type: ignore[no-untyped-def]
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def constant(model, graph, index: int) -> bool:  # type: ignore[no-untyped-def]
        return model.buffers[graph.tensors[index].buffer].data is not None

    if any(t.type == int8 and constant(float_model, g, i) for g in float_model.subgraphs for i, t in enumerate(g.tensors)):
        raise ExportError("the float conversion holds int8 weights: it is not a conversion without quantization, "
                          "so it cannot supply float embedding tables")

    def lookups(graph) -> list[tuple[object, str, int, object]]:  # type: ignore[no-untyped-def]
        """(GATHER, form, table tensor, DEQUANTIZE or None) for each GATHER of a constant table of ``quantized``."""
        producers = {out: op for op in graph.operators for out in op.outputs}
        found = []
        for op in graph.operators:
            if op_code(int8_model, op) != gather:
                continue
            table = op.inputs[0]
            source = producers.get(table)
            if constant(int8_model, graph, table) and graph.tensors[table].type in (int8, float32):
                found.append((op, "int8" if graph.tensors[table].type == int8 else "float", table, None))
            elif (source is not None and op_code(int8_model, source) == dequantize
                  and constant(int8_model, graph, source.inputs[0]) and graph.tensors[source.inputs[0]].type == int8):
                found.append((op, "dequantized", source.inputs[0], source))
        return found

    def drop(graph, op, replacement: int) -> None:  # type: ignore[no-untyped-def]
        """Remove the one-output ``op``; its readers (and the graph's outputs) read ``replacement`` instead."""
        graph.operators.remove(op)
        removed = op.outputs[0]
        for other in graph.operators:
            other.inputs = [replacement if t == removed else t for t in other.inputs]
        graph.outputs = [replacement if t == removed else t for t in graph.outputs]

    new_buffers: dict[int, int] = {}  # float model buffer -> its copy in the int8 model
    forms: dict[str, int] = {"int8": 0, "dequantized": 0, "float": 0}
    for graph, float_graph in zip(int8_model.subgraphs, float_model.subgraphs, strict=True):
        if graph.name != float_graph.name:
            raise ExportError(f"TFLite conversions differ: subgraph {graph.name!r} vs {float_graph.name!r}")
        found = lookups(graph)
        float_ops = [op for op in float_graph.operators if op_code(float_model, op) == gather
                     and float_graph.tensors[op.inputs[0]].type == float32 and constant(float_model, float_graph, op.inputs[0])]
        if len(found) != len(float_ops):
            raise ExportError(f"subgraph {graph.name!r}: {len(found)} embedding tables in the quantized conversion "
                              f"but {len(float_ops)} in the float one")
        for (op, form, index, dequantized_by), float_op in zip(found, float_ops, strict=True):
            table, float_table = graph.tensors[index], float_graph.tensors[float_op.inputs[0]]
            if list(table.shape) != list(float_table.shape):
                raise ExportError(f"embedding shapes differ: {list(table.shape)} vs {list(float_table.shape)}")
            float_data = float_model.buffers[float_table.buffer].data
            forms[form] += 1
            if form == "float":
                if bytes(int8_model.buffers[table.buffer].data) != bytes(float_data):
                    raise ExportError(f"subgraph {graph.name!r}: an embedding table {list(table.shape)} that the "
                                      "converter left float differs from the float conversion's")
                continue
            if form == "dequantized":
                readers = [o for o in graph.operators if index in list(o.inputs)]
                if readers != [dequantized_by]:
                    raise ExportError(f"subgraph {graph.name!r}: an int8 embedding table read by more than one DEQUANTIZE")
            else:
                gathered = op.outputs[0]
                consumers = [o for o in graph.operators if gathered in list(o.inputs)]
                if [op_code(int8_model, o) for o in consumers] != [dequantize]:
                    raise ExportError(f"subgraph {graph.name!r}: an int8 embedding lookup not followed by one DEQUANTIZE")
            if float_table.buffer not in new_buffers:
                copy = schema.BufferT()
                copy.data = float_data
                int8_model.buffers.append(copy)
                new_buffers[float_table.buffer] = len(int8_model.buffers) - 1
            table.buffer, table.type, table.quantization = new_buffers[float_table.buffer], float32, None
            if form == "dequantized":
                drop(graph, dequantized_by, index)  # the GATHER now reads the float table itself
            else:
                graph.tensors[gathered].type, graph.tensors[gathered].quantization = float32, None
                drop(graph, consumers[0], gathered)
    logger.info("embedding tables made float32: %d int8 lookups, %d dequantized before the lookup; %d left float "
                "by the converter", forms["int8"], forms["dequantized"], forms["float"])
    used = {t.buffer for graph in int8_model.subgraphs for t in graph.tensors}
    used |= {entry.buffer for entry in int8_model.metadata or []}  # e.g. min_runtime_version
    for index, buffer in enumerate(int8_model.buffers):
        if index not in used:  # the int8 tables no tensor reads any more
            buffer.data = None
    return bytes(flatbuffer_utils.convert_object_to_bytearray(int8_model))


def save_tokenizer(tokenizer, path: Path) -> None:  # type: ignore[no-untyped-def]
    """The fast tokenizer's own file; the runtime sets truncation from model.json."""
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    backend.save(str(path))


def save_pytorch_copy(model_dir: Path, target: Path) -> None:
    """The fine-tuned PyTorch weights and tokenizer, the source of both exports (not copied into the image).

    The tokenizer is saved with DistilBERT's inputs only: a BERT tokenizer would also emit
    ``token_type_ids``, which DistilBERT's forward (and so ``pipeline()``) rejects.
    """
    from transformers import AutoTokenizer

    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(model_dir / name, target / name)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, model_input_names=["input_ids", "attention_mask"])
    tokenizer.save_pretrained(target)


def tflite_agreement(output: Path, texts: list[str]) -> dict[str, float]:
    """Share of equal labels between the fp32 SavedModel and the int8 TFLite file on ``texts``."""
    from app.model import SentimentModel, scaled_softmax

    # Uncalibrated softmax: the figure does not depend on model.json's temperature (fitted after this check).
    fp32 = scaled_softmax(SentimentModel(output, "savedmodel").predict_logits(texts)[0])
    int8 = scaled_softmax(SentimentModel(output, "tflite").predict_logits(texts)[0])
    agreement = float(np.mean(fp32.argmax(1) == int8.argmax(1)))
    return {"agreement": round(agreement, 5), "n": len(texts),
            "max_probability_difference": round(float(np.max(np.abs(fp32 - int8))), 5)}


def check_tflite_agreement(output: Path, texts: list[str]) -> dict[str, float]:
    """int8-vs-fp32 label agreement on ``texts``; refuses an export under MIN_TFLITE_AGREEMENT."""
    agreement = tflite_agreement(output, texts)
    if agreement["agreement"] < MIN_TFLITE_AGREEMENT:
        raise ExportError(f"int8 TFLite agrees with fp32 on only {agreement['agreement']:.2%} of the "
                          f"validation split (< {MIN_TFLITE_AGREEMENT:.0%}); not exporting")
    return agreement
