"""A tiny training run over several product categories, one held out: the per-category report end to end."""

from __future__ import annotations

import json
from pathlib import Path

from tests.synthetic import reviews


def _write_category(path: Path, seed: int, n: int = 80) -> None:
    """A McAuley-style file (``text<TAB>1|-1``): its name gives the category."""
    texts, labels = reviews(n, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t}\t{1 if y else -1}\n" for t, y in zip(texts, labels, strict=True)), encoding="utf-8")


def test_holdout_category_run_reports_per_category_and_out_of_category(tmp_path: Path, tiny_base: Path) -> None:
    from training.cli import main

    data = tmp_path / "pool"
    for seed, name in enumerate(["Books", "Toys_and_Games", "Pet_Supplies"]):
        _write_category(data / "mcauley" / f"{name}_train.tsv", seed=100 + seed)
    output = tmp_path / "artifacts"
    code = main(["train", "--data", str(data), "--format", "auto", "--base-model", str(tiny_base),
                 "--output", str(output), "--run-dir", str(tmp_path / "run"), "--max-steps", "2", "--max-length", "32",
                 "--warmup-steps", "0", "--holdout-category", "pet_supplies", "--validation-fraction", "0.2",
                 "--test-fraction", "0.2"])
    assert code == 0
    metadata = json.loads((output / "model.json").read_text())
    data_report = metadata["training"]["data"]
    assert data_report["holdout_categories"] == {"pet_supplies": 80}
    assert set(data_report["categories"]) == {"books", "toys_games"}
    assert [f["category"] for f in data_report["files"]] == ["books", "pet_supplies", "toys_games"]
    assert all(f["source"] == "mcauley" and f["rows"] == 80 for f in data_report["files"])
    by_category = metadata["metrics"]["test"]["tflite"]["by_category"]
    assert set(by_category) == {"books", "toys_games"}
    assert sum(v["n"] for v in by_category.values()) == metadata["metrics"]["test"]["tflite"]["n"]
    held = metadata["metrics"]["heldout/pet_supplies"]
    assert held["tflite"]["n"] == 80 and {"pytorch", "savedmodel", "tflite"} <= set(held)
    drop = metadata["out_of_category"]
    assert drop["heldout_categories"] == held["tflite"]["accuracy"]
    card = (output / "MODEL_CARD.md").read_text()
    assert "Held out of training and validation before training: pet_supplies." in card
    assert "| pet_supplies | held out | 80 |" in card
    assert (output / "categories.png").is_file()
