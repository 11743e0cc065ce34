"""Shared fixtures: synthetic data, a tiny random DistilBERT, a small exported model."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "SentimentTests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "sentiment")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from local.invoke import LocalContext
from tests.synthetic import reviews

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "model_artifacts"
# Python source that makes any import of torch or transformers fail (for `python -c` subprocesses).
BLOCK_TORCH = (
    "import sys, importlib.abc\n"
    "class _Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'transformers'):\n"
    "            raise ImportError('blocked: ' + name)\n"
    "sys.meta_path.insert(0, _Block())\n"
)


def write_original_csv(path: Path, n: int = 240, seed: int = 0) -> Path:
    """A CSV in the original format: cleaned_text, sentiment (1 positive, 2 negative)."""
    texts, labels = reviews(n, seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cleaned_text", "sentiment"])
        for text, label in zip(texts, labels, strict=True):
            writer.writerow([text, 1 if label else 2])
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer DistilBERT with a WordPiece vocabulary of the synthetic texts."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizerFast

    out = tmp_path_factory.mktemp("tiny_base")
    texts, _ = reviews(400, seed=1)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(texts, vocab_size=400, min_frequency=1)
    wordpiece.save_model(str(out))
    tokenizer = DistilBertTokenizerFast(vocab_file=str(out / "vocab.txt"), model_max_length=128)
    tokenizer.save_pretrained(out)
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                              max_position_embeddings=128)
    DistilBertModel(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_training_run(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> dict[str, Path]:
    """``python -m training train`` on a 240-row synthetic CSV with --max-steps 4: the Done-when run."""
    from training.cli import main

    work = tmp_path_factory.mktemp("tiny_run")
    data = write_original_csv(work / "reviews.csv")
    output = work / "artifacts"
    code = main(["train", "--data", str(data), "--base-model", str(tiny_base), "--output", str(output),
                 "--run-dir", str(work / "run"), "--max-steps", "4", "--max-length", "64", "--warmup-steps", "0",
                 "--learning-rate", "1e-3", "--seed", "7"])
    assert code == 0
    return {"data": data, "output": output, "run": work / "run", "work": work}


@pytest.fixture(scope="session")
def tiny_artifacts(tiny_training_run: dict[str, Path]) -> Path:
    return tiny_training_run["output"]


@pytest.fixture
def lambda_context() -> LocalContext:
    """The context fields Powertools reads (the same dataclass `make invoke` uses)."""
    return LocalContext(function_name="sentiment-predict", aws_request_id="c6af9ac6-7b61-11e6-9a41-93e812345678",
                        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:sentiment-predict")


def load_event(name: str) -> dict:
    """A golden API Gateway REST proxy event from events/."""
    return json.loads((ROOT / "events" / f"{name}.json").read_text())


@pytest.fixture(scope="session")
def tiny_star_artifacts(tmp_path_factory: pytest.TempPathFactory, tiny_artifacts: Path) -> Path:
    """The tiny model with a random star-rating head beside its PyTorch weights, both artifacts re-exported with
    it (``star_logits``), and a ``four_way`` entry of zero biases in model.json."""
    import shutil

    import numpy as np

    from training.steps.export import RATING_HEAD_FILE, check_tflite_agreement, export_artifacts

    out = tmp_path_factory.mktemp("tiny_star") / "artifacts"
    shutil.copytree(tiny_artifacts, out)
    dim = json.loads((out / "pytorch" / "config.json").read_text())["dim"]
    rng = np.random.default_rng(5)
    np.savez(out / "pytorch" / RATING_HEAD_FILE, weight=rng.normal(0, 1.0, (5, dim)).astype(np.float32),
             bias=rng.normal(0, 0.5, 5).astype(np.float32))
    texts, _ = reviews(40, seed=3)
    metadata = json.loads((out / "model.json").read_text())
    export_artifacts(out / "pytorch", out, texts, int(metadata["max_length"]))
    check_tflite_agreement(out, texts)
    zero = dict.fromkeys(("POSITIVE", "NEGATIVE", "NEUTRAL", "MIXED"), 0.0)
    metadata["four_way"] = {"bias": {"sentence": dict(zero), "review": dict(zero)}}
    (out / "model.json").write_text(json.dumps(metadata, indent=2))
    return out
