"""The engines under test. Each imports its libraries inside ``load`` so that cold start counts them."""

from __future__ import annotations

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


class Engine:
    name = ""

    def load(self) -> None:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """Index of the predicted label (1 = POSITIVE) per text."""
        raise NotImplementedError

    def artifact_mb(self) -> float:
        raise NotImplementedError


class HandlerEngine(Engine):
    """Our Lambda handler, invoked with API Gateway events exactly as Lambda invokes it."""

    def __init__(self, backend: str) -> None:
        self.name = backend
        self.backend = backend

    def load(self) -> None:
        os.environ.update({"MODEL_BACKEND": self.backend, "MODEL_DIR": str(ARTIFACTS),
                           "POWERTOOLS_METRICS_NAMESPACE": "Bench", "POWERTOOLS_SERVICE_NAME": "sentiment"})
        from app.handler import lambda_handler
        from local.invoke import LocalContext

        self.handler, self.context = lambda_handler, LocalContext()
        self.event = json.loads((ROOT / "events" / "predict_single.json").read_text())

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        self.event["body"] = json.dumps({"text": texts[0]} if len(texts) == 1 else {"texts": list(texts)})
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
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="tf",
                               return_token_type_ids=False)
        return self.model(**batch, training=False).logits.numpy().argmax(-1)

    def artifact_mb(self) -> float:
        return _files_mb(self.path)


class TransformersPT(Engine):
    """The Hugging Face pipeline on PyTorch: what most people write first."""

    name = "transformers-pt"

    def load(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("text-classification", model=str(PYTORCH), device=-1)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        outputs = self.pipe(list(texts), batch_size=32, truncation=True, max_length=MAX_LENGTH)
        return np.array([o["label"] == "POSITIVE" for o in outputs], dtype=int)

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
        self.tokenizer.enable_truncation(MAX_LENGTH)
        self.tokenizer.enable_padding(pad_id=0)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
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
