"""Head + tail truncation: the choice on validation, the tiny run's record, the `truncation` command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from training.steps.cut import candidates, truncation_entry


def test_candidates_run_from_tail_only_to_head_only() -> None:
    assert candidates(128) == [0, 16, 32, 48, 64, 80, 96, 112, 126]
    assert candidates(10) == [0, 8]


def test_entry_takes_the_best_accuracy_then_the_lower_nll_then_the_longer_head() -> None:
    labels = np.array([1, 0, 1, 1])
    good = np.array([[0.0, 2.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # 3 of 4 right
    surer = good * 2  # the same labels, surer: its wrong one costs more NLL than its right ones save
    worse = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])  # 2 of 4
    entry = truncation_entry({0: (labels, worse), 16: (labels, good), 30: (labels, surer)}, 32, "savedmodel", 4, 2)
    assert entry["by_head"]["0"]["accuracy"] == 0.5 and entry["by_head"]["16"]["accuracy"] == 0.75
    assert entry["by_head"]["16"]["nll"] < entry["by_head"]["30"]["nll"]
    assert (entry["head"], entry["tail"]) == (16, 14)
    tie = truncation_entry({0: (labels, good), 16: (labels, good), 30: (labels, good)}, 32, "pytorch", 4, 0)
    assert tie["head"] == 30  # nothing to choose between: the head only, as the tokenizer truncates


def test_the_tiny_run_records_how_it_cuts(tiny_training_run: dict[str, Path]) -> None:
    from app.model import SentimentModel

    output = tiny_training_run["output"]
    metadata = json.loads((output / "model.json").read_text())
    entry = metadata["truncation"]
    assert entry["chosen_on"] == "validation" and entry["backend"] == "pytorch"
    assert sorted(int(h) for h in entry["by_head"]) == candidates(metadata["max_length"])
    assert entry["head"] + entry["tail"] == metadata["max_length"] - 2
    assert SentimentModel(output, "tflite").head == entry["head"]
    assert "## Long reviews" in (output / "MODEL_CARD.md").read_text()


def test_truncation_command_sets_the_head_refits_and_remeasures(tiny_training_run: dict[str, Path],
                                                              tmp_path: Path) -> None:
    from app.model import SentimentModel
    from training.cli import main
    from training.data.splits import rebuild_splits

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model_dir)
    before = json.loads((model_dir / "model.json").read_text())
    assert main(["truncation", "--model", str(model_dir), "--head", "0"]) == 0
    after = json.loads((model_dir / "model.json").read_text())
    assert (after["truncation"]["head"], after["truncation"]["tail"]) == (0, 62)
    assert after["truncation"]["pytorch_head"] == before["truncation"]["head"]
    assert after["calibration"]["fitted_on"] == "validation"
    assert after["metrics"]["test"]["pytorch"] == before["metrics"]["test"]["pytorch"]  # kept as training measured
    _, splits, _ = rebuild_splits(model_dir)
    for backend in ("tflite", "savedmodel"):  # the recorded accuracy is the served model's, with the new cut
        model = SentimentModel(model_dir, backend)
        assert model.head == 0
        predicted = model.predict_logits(splits.test.texts)[0].argmax(axis=1)
        assert after["metrics"]["test"][backend]["accuracy"] == pytest.approx(
            float(np.mean(predicted == np.asarray(splits.test.labels))), abs=1e-4)
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "read by its last 62 tokens" in card


def test_truncation_command_chooses_on_validation(tiny_training_run: dict[str, Path], tmp_path: Path) -> None:
    from training.cli import main

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model_dir)
    assert main(["truncation", "--model", str(model_dir)]) == 0
    entry = json.loads((model_dir / "model.json").read_text())["truncation"]
    assert entry["chosen_on"] == "validation" and entry["backend"] == "savedmodel"
    assert entry["head"] in candidates(64) and len(entry["by_head"]) == len(candidates(64))


def test_a_head_out_of_range_is_refused_before_any_work(tiny_training_run: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    model_dir = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model_dir)
    before = (model_dir / "model.json").read_text()
    assert main(["truncation", "--model", str(model_dir), "--head", "63"]) == 2
    assert "'truncation' must be an object with an integer \"head\" from 0 to 62" in capsys.readouterr().err
    assert (model_dir / "model.json").read_text() == before


def test_training_texts_can_be_cut_head_and_tail(tiny_base: Path) -> None:
    from transformers import AutoTokenizer

    from tests.synthetic import reviews
    from training.data.dataset import Examples
    from training.steps.finetune import EncodedDataset

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    texts, _ = reviews(30, seed=4)
    examples = Examples([" ".join(texts), "fine kettle"], [1, 0])
    full = tokenizer(examples.texts[0])["input_ids"]
    assert len(full) > 32
    plain, cut = EncodedDataset(examples, tokenizer, 32), EncodedDataset(examples, tokenizer, 32, 10)
    assert plain[0]["input_ids"] == [*full[:31], full[-1]]  # the default: the tokenizer's own cut
    assert cut[0]["input_ids"] == [*full[:11], *full[-21:]]  # [CLS], 10 first, 20 last, [SEP]
    assert cut[0]["attention_mask"] == [1] * 32 and cut[0]["labels"] == 1
    assert cut[1]["input_ids"] == plain[1]["input_ids"]  # a text that fits is not touched


def test_a_train_head_out_of_range_is_refused() -> None:
    from training.config import TrainConfig

    with pytest.raises(ValueError, match=r"--train-head must be between 0 and --max-length - 2 \(126\), got 127"):
        TrainConfig(data=[Path("reviews.csv")], train_head=127)
