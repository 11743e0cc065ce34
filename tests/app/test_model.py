"""The model runtime: order, truncation, padding, and start-up faults that name the file."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from app.model import ModelLoadError, SentimentModel, cut_ids
from tests.conftest import BLOCK_TORCH, ROOT
from tests.synthetic import reviews


@pytest.fixture
def artifacts_copy(tiny_artifacts: Path, tmp_path: Path) -> Path:
    target = tmp_path / "artifacts"
    shutil.copytree(tiny_artifacts, target)
    return target


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_batches_keep_order_and_match_single_predictions(tiny_artifacts: Path, backend: str) -> None:
    model = SentimentModel(tiny_artifacts, backend, batch_size=4)
    texts, _ = reviews(11, seed=3)
    texts[4] = "short"
    texts[7] = " ".join(texts)  # a long one among short ones
    batch, _ = model.predict_proba(texts)
    singles = np.vstack([model.predict_proba([t])[0] for t in texts])
    np.testing.assert_allclose(batch, singles, atol=1e-4)


def test_truncation_is_reported(tiny_artifacts: Path) -> None:
    model = SentimentModel(tiny_artifacts, "tflite")
    results = model.predict(["fine kettle", " ".join(["great"] * (model.max_length + 5))])
    assert [r.truncated for r in results] == [False, True]


def set_truncation(artifacts: Path, truncation: object) -> None:
    metadata = json.loads((artifacts / "model.json").read_text())
    metadata.pop("truncation", None)
    if truncation is not None:
        metadata["truncation"] = truncation
    (artifacts / "model.json").write_text(json.dumps(metadata))


def test_cut_ids_keeps_head_and_tail_between_the_special_tokens() -> None:
    ids = [101, *range(1, 21), 102]  # [CLS] 1..20 [SEP]
    assert cut_ids(ids, 8, 2) == [101, 1, 2, 17, 18, 19, 20, 102]
    assert cut_ids(ids, 8, 6) == [101, 1, 2, 3, 4, 5, 6, 102]  # the head only
    assert cut_ids(ids, 8, 0) == [101, 15, 16, 17, 18, 19, 20, 102]  # the tail only
    assert cut_ids(ids, 22, 3) == ids  # fits: unchanged
    assert all(len(cut_ids(ids, n, h)) == n for n in range(3, 22) for h in range(n - 1))


def test_head_only_truncation_is_the_tokenizers_own(artifacts_copy: Path) -> None:
    from tokenizers import Tokenizer

    set_truncation(artifacts_copy, None)
    model = SentimentModel(artifacts_copy, "tflite")
    assert model.head == model.max_length - 2
    text = " ".join(reviews(40, seed=5)[0])
    tokenizer = Tokenizer.from_file(str(artifacts_copy / "tokenizer.json"))
    tokenizer.enable_truncation(model.max_length)
    expected = tokenizer.encode(text).ids
    assert cut_ids(model.tokenizer.encode(text).ids, model.max_length, model.head) == expected


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_head_and_tail_reads_the_end_of_a_long_text(artifacts_copy: Path, backend: str) -> None:
    texts, _ = reviews(60, seed=9)
    start = " ".join(texts[:30])
    endings = [" ".join(texts[30:45]), " ".join(texts[45:])]
    set_truncation(artifacts_copy, None)
    head_only = SentimentModel(artifacts_copy, backend)
    assert len(head_only.tokenizer.encode(start).ids) > head_only.max_length  # the endings are past the cut
    plain, truncated = head_only.predict_logits([f"{start} {e}" for e in endings])
    np.testing.assert_allclose(plain[0], plain[1], atol=1e-5)  # the endings are never read
    set_truncation(artifacts_copy, {"head": 20})
    head_tail = SentimentModel(artifacts_copy, backend)
    logits, truncated_too = head_tail.predict_logits([f"{start} {e}" for e in endings])
    assert truncated == truncated_too == [True, True]
    read = []
    for row, ending in enumerate(endings):  # exactly the first 20 and the last max_length - 22 tokens
        ids = head_tail.tokenizer.encode(f"{start} {ending}").ids
        kept = [ids[0], *ids[1:21], *ids[len(ids) - 1 - (head_tail.max_length - 22):]]
        assert len(kept) == head_tail.max_length
        np.testing.assert_allclose(logits[row], head_tail._run(*head_tail._arrays([kept]))["logits"][0], atol=1e-6)
        read.append(kept)
    assert read[0][21:] != read[1][21:]  # the two endings are read, not the same head twice
    short, _ = head_tail.predict_logits(["fine kettle"])  # a text that fits is not touched
    np.testing.assert_allclose(short, head_only.predict_logits(["fine kettle"])[0], atol=1e-6)


@pytest.mark.parametrize("truncation", [{"head": -1}, {"head": 10_000}, {"head": "64"}, {"head": True}, {}, 64])
def test_bad_truncation_entry_stops_start_up(artifacts_copy: Path, truncation: object) -> None:
    set_truncation(artifacts_copy, truncation)
    with pytest.raises(ModelLoadError, match=r"model\.json: 'truncation' must be an object with an integer"):
        SentimentModel(artifacts_copy, "tflite")


def test_empty_input_gives_empty_output(tiny_artifacts: Path) -> None:
    assert SentimentModel(tiny_artifacts, "tflite").predict([]) == []


@pytest.mark.parametrize(("mutilate", "message"), [
    (lambda d: (d / "model.json").unlink(), r"model\.json: missing"),
    (lambda d: (d / "model.json").write_text("{not json"), r"model\.json: not valid JSON"),
    (lambda d: (d / "model.json").write_text('{"labels": ["A", "B"]}'), r"model\.json: missing field"),
    (lambda d: (d / "tokenizer.json").unlink(), r"tokenizer\.json: missing"),
    (lambda d: (d / "tokenizer.json").write_text("[]"), r"tokenizer\.json: not a Hugging Face tokenizers file"),
    (lambda d: (d / "model.tflite").unlink(), r"model\.tflite: missing"),
    (lambda d: (d / "model.tflite").write_bytes((d / "model.tflite").read_bytes()[:5000]), r"model\.tflite"),
    (lambda d: (d / "model.tflite").write_bytes(b"\0" * 100), r"model\.tflite"),
])
def test_broken_artifacts_stop_start_up_naming_the_file(artifacts_copy: Path, mutilate, message: str) -> None:
    mutilate(artifacts_copy)
    with pytest.raises(ModelLoadError, match=message):
        SentimentModel(artifacts_copy, "tflite")


def test_tokenizer_of_another_model_is_refused(artifacts_copy: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    big = Tokenizer(models.WordLevel({f"w{i}": i for i in range(5000)} | {"[UNK]": 5000, "[PAD]": 5001},
                                     unk_token="[UNK]"))
    big.pre_tokenizer = pre_tokenizers.Whitespace()
    big.save(str(artifacts_copy / "tokenizer.json"))
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json: 5002 tokens, but the model embeds only"):
        SentimentModel(artifacts_copy, "tflite")


def test_labels_that_do_not_match_the_outputs(artifacts_copy: Path) -> None:
    metadata = json.loads((artifacts_copy / "model.json").read_text())
    metadata["labels"] = ["NEGATIVE", "NEUTRAL", "POSITIVE"]
    (artifacts_copy / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match=r"model\.tflite: outputs shape \(1, 2\).*3 labels"):
        SentimentModel(artifacts_copy, "tflite")


def test_missing_savedmodel_and_unknown_backend(artifacts_copy: Path) -> None:
    shutil.rmtree(artifacts_copy / "saved_model")
    with pytest.raises(ModelLoadError, match=r"saved_model\.pb: missing"):
        SentimentModel(artifacts_copy, "savedmodel")
    with pytest.raises(ModelLoadError, match="MODEL_BACKEND='onnx'"):
        SentimentModel(artifacts_copy, "onnx")


def test_app_never_imports_torch_transformers_or_the_xray_sdk(tiny_artifacts: Path) -> None:
    # The X-Ray SDK (Powertools Tracer) cost 0.3 s of every cold start; Lambda's active tracing needs none of it.
    code = BLOCK_TORCH + (
        "import app.handler, app.model, app.batch\n"
        "assert not any(m.split('.')[0] in ('torch', 'transformers') for m in sys.modules)\n"
        "assert not any(m.split('.')[0] == 'aws_xray_sdk' for m in sys.modules), 'aws_xray_sdk imported'\n"
    )
    env = {"MODEL_DIR": str(tiny_artifacts), "MODEL_BACKEND": "tflite",
           "PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"}
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = set()
    for path in (ROOT / "app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module.split(".")[0])
    assert not imported & {"torch", "transformers"}
    assert {"tokenizers", "numpy"} <= imported


def test_startup_failure_message_in_a_fresh_process(tmp_path: Path) -> None:
    env = {"MODEL_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-c", "import app.handler"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert f"{tmp_path}/model.json: missing" in run.stderr
