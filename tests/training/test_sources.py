"""The widened pool: readers of every new source, categories, cross-source de-duplication, leaks, per-category splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.synthetic import reviews
from training.data import DataError, read_file
from training.data.dataset import Examples, build_splits, category_of, drop_eval_leaks, load_examples, text_key
from training.data.leaks import find_leaks
from training.data.readers import detect_format, detokenize

LONG_POSITIVE = ("I have owned this little kettle for three months now and it boils a full litre in under two "
                 "minutes without any fuss")
LONG_NEGATIVE = ("The zipper on this backpack tore on the second day and the seller never answered a single one "
                 "of my messages about it")


def _blitzer_block(rating: str, title: str, text: str) -> str:
    return (f"<review>\n<rating>\n{rating}\n</rating>\n<title>\n{title}\n</title>\n"
            f"<review_text>\n{text}\n</review_text>\n</review>\n")


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_fdu_mtl_reader_and_detection(tmp_path: Path) -> None:
    path = _write(tmp_path / "toys_games.task.train",
                  "1\ti love this toy , my son plays with it every day !\n0\tit broke , do n't buy it .\n")
    assert detect_format(path) == "fdu-mtl"
    result = read_file(path)
    assert result.fmt == "fdu-mtl"
    assert result.texts == ["i love this toy, my son plays with it every day!", "it broke, don't buy it."]
    assert result.labels == [1, 0]
    with path.open("a") as handle:
        handle.write("2\tnot a label\n")
    assert read_file(path, "fdu-mtl").bad_rows == 1


def test_mcauley_reader_undoes_tokenization(tmp_path: Path) -> None:
    path = _write(tmp_path / "Pet_Supplies_train.tsv",
                  "My dog loves & quot ; Chewy & quot ; , I 've bought three .\t1\n"
                  "It does n't fit & amp ; it smells .\t-1\n")
    assert detect_format(path) == "mcauley"
    result = read_file(path, "auto")
    assert result.texts == ['My dog loves "Chewy", I\'ve bought three.', "It doesn't fit & it smells."]
    assert result.labels == [1, 0]


def test_mcauley_detected_by_name_when_the_first_lines_are_positive(tmp_path: Path) -> None:
    path = _write(tmp_path / "Books_dev.tsv", "A fine read .\t1\nLoved it .\t1\n")
    assert detect_format(path) == "mcauley"


def test_hatn_reader_takes_the_label_from_the_file_name(tmp_path: Path) -> None:
    positive = _write(tmp_path / "kitchen" / "review_positive", "Great pan!. Heats evenly and cleans up fast.\n\n")
    negative = _write(tmp_path / "kitchen" / "review_negative", "Junk. Warped after one use.\n")
    assert read_file(positive).labels == [1] and read_file(positive).fmt == "hatn"
    assert read_file(negative).texts == ["Junk. Warped after one use."] and read_file(negative).labels == [0]


def test_blitzer_utf8_copy_is_decoded_as_utf8(tmp_path: Path) -> None:
    text = _blitzer_block("5.0", "Café quality", "Tastes like a real café espresso.")
    path = _write(tmp_path / "grocery" / "positive.review", text.encode("utf-8"))
    result = read_file(path)
    assert result.texts == ["Café quality. Tastes like a real café espresso."]  # not CafÃ©


def test_unlabeled_and_all_review_files_are_labelled_by_rating(tmp_path: Path) -> None:
    body = (_blitzer_block("1.0", "Bad", "Leaked.") + _blitzer_block("3.0", "Meh", "Fine.")
            + _blitzer_block("5.0", "Good", "Works.") + _blitzer_block("", "None", "No rating."))
    for name in ("baby/unlabeled.review", "grocery/grocery_all.review"):
        result = read_file(_write(tmp_path / name, body))
        assert result.labels == [0, 1]
        assert result.dropped_neutral == 1 and result.bad_rows == 1  # no file-name fallback for these


def test_cr_reader(tmp_path: Path) -> None:
    path = _write(tmp_path / "custrev.txt", "1 the screen is bright and sharp .\n0 the battery died in a week .\n")
    assert detect_format(path) == "cr"
    result = read_file(path)
    assert result.texts == ["the screen is bright and sharp.", "the battery died in a week."]
    assert result.labels == [1, 0]


def test_a_file_of_unknown_format_stops_the_run_naming_it(tmp_path: Path) -> None:
    _write(tmp_path / "pool" / "fdu" / "apparel.task.train", "1\tfits well\n0\ttoo small\n")
    odd = _write(tmp_path / "pool" / "other" / "notes.dat", "this is not a data file\nnor is this line\n")
    with pytest.raises(DataError, match=str(odd)):
        load_examples([tmp_path / "pool"])


@pytest.mark.parametrize(("path", "category"), [
    ("mcauley_24_categories/Toys_and_Games_train.tsv", "toys_games"),
    ("fdu_mtl/toys_games.task.test", "toys_games"),
    ("hatn_blitzer_raw/kitchen/review_positive", "kitchen_housewares"),
    ("blitzer_multi_domain/kitchen_housewares/negative.review", "kitchen_housewares"),
    ("blitzer_unprocessed_more_domains/grocery/grocery_all.review", "grocery"),
    ("mcauley_24_categories/Grocery_and_Gourmet_Food_dev.tsv", "grocery"),
    ("amazon_us_reviews_digital_software/part-00003-abc.c000.snappy.parquet", "digital_software"),
])
def test_category_from_folder_and_file_names(path: str, category: str) -> None:
    assert category_of(Path(path)) == category


def test_text_key_ignores_case_punctuation_and_tokenization() -> None:
    assert text_key("I've LOVED it, really!") == text_key("i 've loved it , really !") == "ivelovedit" + "really"


def test_detokenize_keeps_plain_text() -> None:
    assert detokenize("Plain text, already fine.") == "Plain text, already fine."


def _pool(tmp_path: Path) -> Path:
    """One review in three sources (raw with title, tokenized, lowercased and cut short) plus distinct reviews."""
    root = tmp_path / "train"
    body = ("This blender crushes ice in seconds and I've used it every morning for smoothies since the day it "
            "arrived, still going strong")
    _write(root / "blitzer_raw" / "kitchen" / "positive.review",
           _blitzer_block("5.0", "Best blender", body) + _blitzer_block("1.0", "Awful", "Motor burnt out in a week."))
    tokenized = body.replace("I've", "I 've").replace(",", " ,")
    texts, labels = reviews(40, seed=3)
    mcauley = "".join(f"{t}\t{1 if y else -1}\n" for t, y in zip(texts[:20], labels[:20], strict=True))
    _write(root / "mcauley" / "Home_and_Kitchen_train.tsv", f"{tokenized}\t1\n{mcauley}")
    fdu = "".join(f"{y}\t{t.lower()}\n" for t, y in zip(texts[20:], labels[20:], strict=True))
    _write(root / "fdu" / "kitchen_housewares.task.train", f"1\t{tokenized.lower()[:90]}\n{fdu}")
    return root


def test_cross_source_duplicates_keep_the_least_processed_copy(tmp_path: Path) -> None:
    examples = load_examples([_pool(tmp_path)])
    blender = [i for i, t in enumerate(examples.texts) if "blender crushes ice" in t.lower()]
    assert len(blender) == 1
    kept = blender[0]
    assert examples.texts[kept].startswith("Best blender. This blender")  # the raw copy, title and case intact
    assert examples.datasets[kept] == "blitzer_raw" and examples.categories[kept] == "kitchen_housewares"
    sources = examples.report["sources"]
    assert sources["mcauley"]["duplicates_dropped"] == 1 and sources["fdu"]["duplicates_dropped"] == 1
    assert sources["blitzer_raw"] == {"rows": 2, "duplicates_dropped": 0, "kept": 2}
    assert examples.report["duplicates_dropped"] == 2
    assert {f["source"] for f in examples.report["files"]} == {"blitzer_raw", "mcauley", "fdu"}


def test_leak_check_finds_contained_and_nearly_contained_evaluation_texts() -> None:
    eval_texts = [LONG_POSITIVE + ".", LONG_NEGATIVE + ".", "I would highly recommend this product."]
    train = [
        f"Five stars. {LONG_POSITIVE.upper()}!!! Would buy again.",  # contains it, other case and punctuation
        "Sad. " + LONG_NEGATIVE.replace("about it", "about that") + ", sent it back.",  # its last word changed
        "Great kettle. I would highly recommend this product. It is quick.",  # a stock phrase, not a copy
        "An unrelated review about a desk lamp that is bright enough for reading at night and folds flat",
    ]
    found = find_leaks(train, eval_texts)
    assert found.contains_eval == [0, 1]
    assert found.inside_eval == []
    snippet = find_leaks(["the zipper on this backpack tore on the second day and the seller never answered"],
                         [LONG_NEGATIVE])
    assert snippet.inside_eval == [0]  # a training snippet of an evaluation review


def test_drop_eval_leaks_counts_per_source() -> None:
    texts, labels = reviews(10, seed=5)
    examples = Examples([*texts, f"Title. {LONG_POSITIVE} and more."], [*labels, 1], datasets=["a"] * 10 + ["b"],
                        categories=["x"] * 11, sources=["f"] * 11, titles=[""] * 11,
                        report={"sources": {"a": {"rows": 10}, "b": {"rows": 1}}})
    cleaned = drop_eval_leaks(examples, [LONG_POSITIVE])
    assert len(cleaned) == 10 and LONG_POSITIVE not in " ".join(cleaned.texts)
    assert cleaned.report["leaks"]["dropped"] == 1 and cleaned.report["leaks"]["by_source"] == {"b": 1}
    assert cleaned.report["sources"]["b"]["leaks_dropped"] == 1


def _categorised(n_per: int = 60, categories: tuple[str, ...] = ("books", "toys", "tools", "pets")) -> Examples:
    texts, labels = reviews(n_per * len(categories), seed=11)
    cats = [categories[(i // 2) % len(categories)] for i in range(len(texts))]  # labels alternate
    return Examples(texts, labels, sources=["f"] * len(texts), titles=[""] * len(texts), categories=cats,
                    datasets=["d"] * len(texts), report={"examples": len(texts)})


def test_split_is_stratified_by_category_and_label() -> None:
    splits = build_splits(_categorised(), seed=1, validation_fraction=0.1, test_fraction=0.2)
    for part, expected in ((splits.test, 12), (splits.validation, 6)):
        counts = Counter(zip(part.categories, part.labels, strict=True))
        assert set(counts.values()) <= {expected // 2 - 1, expected // 2, expected // 2 + 1}, counts
        assert len(counts) == 8
    assert splits.report["categories"]["books"] == {"train": 42, "validation": 6, "test": 12}


def test_holdout_categories_never_reach_training_validation_or_test() -> None:
    splits = build_splits(_categorised(), seed=1, holdout_categories=["pets"])
    for part in (splits.train, splits.validation, splits.test):
        assert "pets" not in part.categories
    assert set(splits.heldout) == {"pets"} and len(splits.heldout["pets"]) == 60
    assert splits.report["holdout_categories"] == {"pets": 60}
    assert splits.report["examples"] == 240  # the pool's own report survives the hold-out
    with pytest.raises(DataError, match="no such category"):
        build_splits(_categorised(), holdout_categories=["garden"])


def test_category_cap_limits_each_category_and_label() -> None:
    splits = build_splits(_categorised(n_per=100), seed=1, category_cap=10)
    counts = Counter(zip(splits.train.categories, splits.train.labels, strict=True))
    assert set(counts.values()) == {10} and len(counts) == 8


def test_after_sample_draws_only_reviews_the_earlier_sample_left_out() -> None:
    """Continued training: the second stage's sample is disjoint from the first's; the split is the same."""
    first = build_splits(_categorised(n_per=100), seed=1, category_cap=10, balance=True)
    second = build_splits(_categorised(n_per=100), seed=1, category_cap=10, balance=True, after_sample=10)
    assert len(second.train) == len(first.train) == 80
    assert not {text_key(t) for t in first.train.texts} & {text_key(t) for t in second.train.texts}
    assert second.validation.texts == first.validation.texts and second.test.texts == first.test.texts
    assert second.report["train_left_out_earlier_sample"] == 80
    assert second.report["train_pool"] == first.report["train_pool"] - 80
    other = build_splits(_categorised(n_per=100), seed=1, category_cap=10, balance=True, after_sample=20)
    assert other.report["train_left_out_earlier_sample"] == 160


def test_per_category_report_plot_and_card(tmp_path: Path) -> None:
    from training.steps.evaluate import accuracy_by_category
    from training.steps.report import _categories_section, out_of_category_drop, plot_categories

    examples = _categorised(n_per=4, categories=("books", "toys"))
    predicted = np.asarray(examples.labels).copy()
    predicted[0] = 1 - predicted[0]  # one error, in books
    by_category = accuracy_by_category(examples, predicted)
    assert by_category == {"books": {"n": 4, "accuracy": 0.75}, "toys": {"n": 4, "accuracy": 1.0}}
    metrics = {"test": {"tflite": {"accuracy": 0.875, "by_category": by_category}},
               "heldout/pets": {"tflite": {"n": 10, "accuracy": 0.8}}}
    drop = out_of_category_drop(metrics)
    assert drop == {"trained_categories": 0.875, "heldout_categories": 0.8, "drop": 0.075}
    assert plot_categories(metrics, tmp_path / "categories.png")
    assert (tmp_path / "categories.png").read_bytes()[:4] == b"\x89PNG"
    section = _categories_section({"metrics": metrics, "training": {"config": {"holdout_category": ["pets"]}}})
    assert "Held out of training and validation before training: pets." in section
    assert "accuracy is **7.5 points lower**" in section and "| pets | held out | 10 | 0.8000 |" in section
    assert json.dumps(metrics)  # stays JSON for model.json
    metrics["heldout/pets"]["tflite"]["accuracy"] = 0.9  # better on the held-out category than on the trained ones
    assert "accuracy is **2.5 points higher**" in _categories_section(
        {"metrics": metrics, "training": {"config": {"holdout_category": ["pets"]}}})


def test_card_says_when_the_base_model_is_an_earlier_run() -> None:
    from training.steps.report import _base_note

    assert "earlier training run" in _base_note({"base_model": "runs/full/final_model"})
    assert _base_note({"base_model": "runs/base-minilm"}) == ""
