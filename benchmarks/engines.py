"""The engines under test. Each imports its libraries inside ``load`` so that cold start counts them."""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("BENCH_MODEL_DIR") or ROOT / "model_artifacts")
CACHE = ROOT / "benchmarks" / ".cache"
PYTORCH = ARTIFACTS / "pytorch"
MAX_LENGTH = 128


def _files_mb(*paths: Path) -> float:
    total = 0
    for path in paths:
        total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    return round(total / 1e6, 1)


@functools.cache
def _head() -> int:
    from app.model import truncation_head

    return truncation_head(json.loads((ARTIFACTS / "model.json").read_text()))


def served_arrays(ids: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Untruncated token ids cut as the handler cuts them (model.json ``truncation``: head + tail) and padded:
    every peer reads the same tokens as our engine, so agreement measures the engines, not the cut."""
    from app.model import cut_ids

    cut = [cut_ids(list(x), MAX_LENGTH, _head()) for x in ids]
    input_ids = np.zeros((len(cut), max(len(x) for x in cut)), dtype=np.int64)  # [PAD] is 0
    attention_mask = np.zeros_like(input_ids)
    for row, x in enumerate(cut):
        input_ids[row, : len(x)], attention_mask[row, : len(x)] = x, 1
    return input_ids, attention_mask


class Engine:
    name = ""

    def load(self) -> None:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Index of the predicted label (1 = POSITIVE) per text."""
        raise NotImplementedError

    def artifact_mb(self) -> float:
        raise NotImplementedError


def binary_only_artifacts() -> Path:
    """The bundled model as served before the four-way fields: model.json without ``four_way`` (the other files
    linked), so that the handler answers label, score, scores and truncated only."""
    target = CACHE / "binary-only"
    metadata = json.loads((ARTIFACTS / "model.json").read_text())
    metadata.pop("four_way", None)
    target.mkdir(parents=True, exist_ok=True)
    for path in ARTIFACTS.iterdir():
        link = target / path.name
        if path.name != "model.json" and not link.exists():
            link.symlink_to(path.resolve())
    (target / "model.json").write_text(json.dumps(metadata))
    return target


class HandlerEngine(Engine):
    """Our Lambda handler, invoked with API Gateway events exactly as Lambda invokes it.

    ``variant``: ``four_way`` (the service as deployed), ``sentences`` (every request asks for ``sentences``) or
    ``binary`` (the same weights without the four-way rules: the answer before the four-way fields existed).
    """

    def __init__(self, backend: str, variant: str = "four_way") -> None:
        self.name = backend if variant == "four_way" else f"{backend}-{variant.replace('_', '-')}"
        self.backend = backend
        self.variant = variant

    def load(self) -> None:
        model_dir = binary_only_artifacts() if self.variant == "binary" else ARTIFACTS
        os.environ.update({"MODEL_BACKEND": self.backend, "MODEL_DIR": str(model_dir),
                           "POWERTOOLS_METRICS_NAMESPACE": "Bench", "POWERTOOLS_SERVICE_NAME": "sentiment"})
        from app.handler import lambda_handler
        from local.invoke import LocalContext

        self.handler, self.context = lambda_handler, LocalContext()
        self.event = json.loads((ROOT / "events" / "predict_single.json").read_text())

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        body: dict[str, object] = {"text": texts[0]} if len(texts) == 1 else {"texts": list(texts)}
        if self.variant == "sentences":
            body["sentences"] = True
        self.event["body"] = json.dumps(body)
        response = self.handler(self.event, self.context)
        if response["statusCode"] != 200:
            raise RuntimeError(f"handler answered {response['statusCode']}: {response['body'][:200]}")
        return np.array([r["label"] == "POSITIVE" for r in json.loads(response["body"])["results"]], dtype=int)

    def artifact_mb(self) -> float:
        model = ARTIFACTS / ("model.tflite" if self.backend == "tflite" else "saved_model")
        return _files_mb(model, ARTIFACTS / "tokenizer.json", ARTIFACTS / "model.json")


class ModelOnly(Engine):
    """Diagnostic, not a peer: our LiteRT model (tokenizer + interpreter) without the Lambda handler around it,
    the same layers the ``onnxruntime-int8`` engine measures."""

    name = "tflite-model-only"

    def load(self) -> None:
        os.environ.update({"MODEL_BACKEND": "tflite", "MODEL_DIR": str(ARTIFACTS)})
        from app.model import SentimentModel
        from app.settings import Settings

        self.model = SentimentModel.from_settings(Settings.from_env())  # the service's threads and batch size

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(texts)[0].argmax(-1)

    def artifact_mb(self) -> float:
        return _files_mb(ARTIFACTS / "model.tflite", ARTIFACTS / "tokenizer.json", ARTIFACTS / "model.json")


class TransformersTF(Engine):
    """What the product brief literally says: TFDistilBertForSequenceClassification + a transformers tokenizer."""

    name = "transformers-tf"
    path = CACHE / "transformers-tf"

    def load(self) -> None:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf
        from transformers import AutoTokenizer, TFDistilBertForSequenceClassification

        self.tf = tf
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = TFDistilBertForSequenceClassification.from_pretrained(self.path)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask = served_arrays(self.tokenizer(list(texts), verbose=False)["input_ids"])
        return self.model(input_ids=self.tf.constant(ids), attention_mask=self.tf.constant(mask),
                          training=False).logits.numpy().argmax(-1)

    def artifact_mb(self) -> float:
        return _files_mb(self.path)


class TransformersPT(Engine):
    """transformers on PyTorch (AutoTokenizer + AutoModelForSequenceClassification): what most people write first.

    Not ``pipeline()``: it can only cut a long text at its start, and every engine here reads the same tokens."""

    name = "transformers-pt"

    def load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(PYTORCH)
        self.model = AutoModelForSequenceClassification.from_pretrained(PYTORCH).eval()
        self.positive = self.model.config.label2id.get("POSITIVE", 1)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask = served_arrays(self.tokenizer(list(texts), verbose=False)["input_ids"])
        with self.torch.inference_mode():
            logits = self.model(input_ids=self.torch.from_numpy(ids), attention_mask=self.torch.from_numpy(mask)).logits
        return (logits.argmax(-1).numpy() == self.positive).astype(int)

    def artifact_mb(self) -> float:
        return _files_mb(PYTORCH)


class OnnxRuntimeInt8(Engine):
    """ONNX Runtime with dynamic int8 quantization of the same weights, `tokenizers` for the text."""

    name = "onnxruntime-int8"
    path = CACHE / "model.int8.onnx"

    def load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(ARTIFACTS / "tokenizer.json"))
        self.tokenizer.no_truncation()  # cut as the handler cuts: served_arrays

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        ids, mask = served_arrays([e.ids for e in self.tokenizer.encode_batch(list(texts))])
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0].argmax(-1)

    def artifact_mb(self) -> float:
        return _files_mb(self.path, ARTIFACTS / "tokenizer.json")


ENGINES = {
    "tflite": lambda: HandlerEngine("tflite"),
    "savedmodel": lambda: HandlerEngine("savedmodel"),
    "transformers-tf": TransformersTF,
    "transformers-pt": TransformersPT,
    "onnxruntime-int8": OnnxRuntimeInt8,
    "tflite-model-only": ModelOnly,
    "tflite-binary": lambda: HandlerEngine("tflite", "binary"),
    "tflite-sentences": lambda: HandlerEngine("tflite", "sentences"),
}


def build_transformers_tf() -> None:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from transformers import AutoTokenizer, TFDistilBertForSequenceClassification

    TFDistilBertForSequenceClassification.from_pretrained(PYTORCH, from_pt=True).save_pretrained(TransformersTF.path)
    AutoTokenizer.from_pretrained(PYTORCH).save_pretrained(TransformersTF.path)


def build_onnx_int8() -> None:
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(PYTORCH).eval()
    fp32 = CACHE / "model.onnx"
    ids = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(fp32), input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                    "logits": {0: "batch"}})
    quantize_dynamic(str(fp32), str(OnnxRuntimeInt8.path), weight_type=QuantType.QInt8)
    fp32.unlink()


def bundled_version() -> str:
    return str(json.loads((ARTIFACTS / "model.json").read_text())["version"])


def prepare(builders: dict[Path, Callable[[], None]] | None = None) -> None:
    """Derive the peers' artifacts from the bundled PyTorch weights, once per model version (cached).

    The cache remembers which model.json version it was built from: a new bundled model rebuilds
    every peer, so the benchmark never compares our engine with an older model's peers.
    """
    builders = {TransformersTF.path: build_transformers_tf, OnnxRuntimeInt8.path: build_onnx_int8} \
        if builders is None else builders
    CACHE.mkdir(parents=True, exist_ok=True)
    stamp, version = CACHE / "peers_version", bundled_version()
    current = stamp.is_file() and stamp.read_text().strip() == version
    for path, build in builders.items():
        if current and path.exists():
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        build()
    stamp.write_text(version)
