"""Cleaning, de-duplication, stratified splits and leakage control."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_original_csv
from tests.synthetic import reviews
from training.data import build_splits, clean_text, load_examples
from training.data.dataset import Examples, text_key
from training.data.readers import DataError


def test_clean_text_html_and_whitespace() -> None:
    assert clean_text("Great&#34;s  value<br /><br />Loved   it &amp;amp; more\n") == 'Great"s value Loved it & more'
    assert clean_text("<br/>   ") == ""


def test_load_drops_duplicates_and_conflicts(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("cleaned_text,sentiment\nNice one,1\nnice  one,1\nMixed bag,1\nmixed bag,2\n"
                    "<br />,1\nGood,1\nPoor,2\n")
    examples = load_examples([path], "csv")
    assert sorted(examples.texts) == ["Good", "Nice one", "Poor"]
    assert examples.report["duplicates_dropped"] == 2
    assert examples.report["conflicting_labels_dropped"] == 1
    assert examples.report["empty_after_cleaning"] == 1


def test_splits_are_stratified_deterministic_and_disjoint(tmp_path: Path) -> None:
    examples = load_examples([write_original_csv(tmp_path / "r.csv", n=200)], "csv")
    a = build_splits(examples, seed=3)
    b = build_splits(examples, seed=3)
    c = build_splits(examples, seed=4)
    assert a.train.texts == b.train.texts and a.test.texts == b.test.texts
    assert a.test.texts != c.test.texts
    assert (len(a.train), len(a.validation), len(a.test)) == (160, 20, 20)
    assert a.validation.counts() == {"negative": 10, "positive": 10}
    keys = [set(map(text_key, s.texts)) for s in (a.train, a.validation, a.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2])


def test_training_texts_in_eval_sets_are_dropped_and_reported(tmp_path: Path) -> None:
    examples = load_examples([write_original_csv(tmp_path / "r.csv", n=100)], "csv")
    plain = build_splits(examples, seed=0)
    leaked = [plain.train.texts[0].upper(), plain.train.texts[5]]
    splits = build_splits(examples, seed=0, exclude_texts=leaked)
    assert len(splits.train) == len(plain.train) - 2
    assert splits.report["train_dropped_overlap_eval_sets"] == 2
    assert not {text_key(t) for t in leaked} & {text_key(t) for t in splits.train.texts}


def test_balance_and_max_train_samples() -> None:
    texts, _ = reviews(300, seed=5)
    skewed = Examples(texts[:300], [1 if i % 3 else 0 for i in range(300)])
    splits = build_splits(skewed, seed=0, balance=True, max_train_samples=60)
    assert splits.train.counts() == {"negative": 30, "positive": 30}
    capped = build_splits(skewed, seed=0, max_train_samples=50)
    assert len(capped.train) == 50


def test_train_source_filters_training_only(tmp_path: Path) -> None:
    first = write_original_csv(tmp_path / "software.csv", n=120, seed=1)
    second = write_original_csv(tmp_path / "kitchen.csv", n=120, seed=2)
    examples = load_examples([first, second], "csv")
    whole = build_splits(examples, seed=0)
    narrowed = build_splits(examples, seed=0, train_sources=["kitchen"])
    assert narrowed.validation.texts == whole.validation.texts and narrowed.test.texts == whole.test.texts
    assert narrowed.train.sources and all("kitchen" in s for s in narrowed.train.sources)
    expected = [t for t, s in zip(whole.train.texts, whole.train.sources, strict=True) if "kitchen" in s]
    assert narrowed.train.texts == expected and 0 < len(expected) < len(whole.train)
    assert narrowed.report["train_sources"] == ["kitchen"]
    with pytest.raises(DataError, match="no training file"):
        build_splits(examples, seed=0, train_sources=["books"])


def _titled(n: int) -> Examples:
    texts, labels = reviews(n, seed=9)
    titles = [f"{'Lovely' if y else 'Dreadful'} thing number {i}" for i, y in enumerate(labels)]
    return Examples(texts, labels, sources=["s.review"] * n, titles=titles)


def test_title_examples_add_training_titles_only(tmp_path: Path) -> None:
    examples = _titled(200)
    plain = build_splits(examples, seed=0)
    titled = build_splits(examples, seed=0, title_examples=True)
    assert titled.validation.texts == plain.validation.texts and titled.test.texts == plain.test.texts
    assert titled.train.texts[: len(plain.train)] == plain.train.texts
    added = titled.train.texts[len(plain.train):]
    title_label = dict(zip(examples.titles, examples.labels, strict=True))
    assert sorted(added) == sorted(plain.train.titles)  # every training review's title, nothing else
    assert titled.train.labels[len(plain.train):] == [title_label[t] for t in added]
    assert titled.report["train_reviews"] == len(plain.train) and titled.report["train_title_examples"] == len(added)
    assert plain.report["train_title_examples"] == 0


def test_title_examples_skip_leaks_conflicts_and_balance(tmp_path: Path) -> None:
    texts, labels = reviews(120, seed=3)
    titles = ["Five Stars" if y else "One Star" for y in labels]  # repeated titles count once
    titles[:6] = ["Mixed"] * 6  # under both labels (reviews alternate labels): left out
    titles[6] = "Held out"  # also an evaluation text: left out
    titles[7] = ""  # no title
    examples = Examples(texts, labels, sources=["x"] * 120, titles=titles)
    splits = build_splits(examples, seed=0, validation_fraction=0.05, test_fraction=0.05, title_examples=True,
                          exclude_texts=["held OUT"])
    added = splits.train.texts[splits.report["train_reviews"]:]
    assert "Mixed" not in added and "Held out" not in added and "" not in added
    assert sorted(added) == ["Five Stars", "One Star"]
    skewed = Examples(texts, labels, sources=["x"] * 120,
                      titles=[f"{'Nice' if y else 'Bad'} {i}" if y or i % 4 == 0 else "" for i, y in enumerate(labels)])
    balanced = build_splits(skewed, seed=0, balance=True, title_examples=True)
    extra = balanced.train.labels[balanced.report["train_reviews"]:]
    assert extra and extra.count(0) == extra.count(1)


def test_title_examples_without_titles_add_nothing(tmp_path: Path) -> None:
    examples = load_examples([write_original_csv(tmp_path / "r.csv", n=100)], "csv")  # the CSV has no titles
    plain = build_splits(examples, seed=0)
    titled = build_splits(examples, seed=0, title_examples=True)
    assert titled.train.texts == plain.train.texts and titled.report["train_title_examples"] == 0
    hand_made = Examples(*reviews(60, seed=1))  # built without a titles list
    assert build_splits(hand_made, seed=0, title_examples=True).report["train_title_examples"] == 0
