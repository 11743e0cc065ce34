"""From files to clean, de-duplicated, leak-free train / validation / test splits."""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sklearn.model_selection import train_test_split

from training.data.readers import DataError, LabelSpec, ReadResult, read_file, unescape

logger = logging.getLogger(__name__)

_BR = re.compile(r"<\s*br\s*/?\s*>", re.I)
_TAG = re.compile(r"</?(?:p|div|span|i|b|em|strong|a)(?:\s[^>]*)?>", re.I)
_SPACE = re.compile(r"\s+")
_SKIP_NAMES = {"readme", "license"}
_DATA_SUFFIXES = {".parquet", ".review", ".csv", ".tsv", ".txt", ".ft"}


def clean_text(text: str) -> str:
    """HTML entities and tags out, ``<br>`` to spaces, whitespace collapsed."""
    text = unescape(text)
    text = _BR.sub(" ", text)
    text = _TAG.sub("", text)
    text = text.replace('\\"', '"')
    return _SPACE.sub(" ", text).strip()


def text_key(text: str) -> str:
    """Key under which two texts count as the same (case and spacing ignored)."""
    return _SPACE.sub(" ", text.lower()).strip()


@dataclass
class Examples:
    """Cleaned texts and labels, with a report of what was read and dropped."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    report: dict[str, object] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # file each text was read from (empty when unknown)
    titles: list[str] = field(default_factory=list)  # each review's cleaned title ("" when none; empty when unknown)

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        counter = Counter(self.labels)
        return {"negative": counter.get(0, 0), "positive": counter.get(1, 0)}


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files named directly, plus every data file found under named directories."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix in _DATA_SUFFIXES and p.stem.lower() not in _SKIP_NAMES
            )
            if not found:
                raise DataError(f"{path}: directory holds no data files ({sorted(_DATA_SUFFIXES)})")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    return files


def load_examples(paths: list[Path], fmt: str = "auto", spec: LabelSpec | None = None) -> Examples:
    """Read, clean and de-duplicate every file; conflicting duplicates are dropped entirely."""
    results: list[ReadResult] = [read_file(p, fmt, spec) for p in expand_paths(paths)]
    by_key: dict[str, tuple[str, int, str, str]] = {}
    conflicting: set[str] = set()
    duplicates = empty = 0
    for result in results:
        source = str(result.path)
        titles = result.titles or [""] * len(result.texts)
        for raw, label, title in zip(result.texts, result.labels, titles, strict=True):
            text = clean_text(raw)
            if not text:
                empty += 1
                continue
            key = text_key(text)
            if key in by_key:
                duplicates += 1
                if by_key[key][1] != label:
                    conflicting.add(key)
                continue
            by_key[key] = (text, label, source, clean_text(title) if title else "")
    examples = Examples()
    for key, (text, label, source, title) in by_key.items():
        if key not in conflicting:
            examples.texts.append(text)
            examples.labels.append(label)
            examples.sources.append(source)
            examples.titles.append(title)
    examples.report = {
        "files": [
            {"path": str(r.path), "format": r.fmt, "rows": len(r.texts), "bad_rows": r.bad_rows,
             "neutral_dropped": r.dropped_neutral}
            for r in results
        ],
        "bad_rows": sum(r.bad_rows for r in results),
        "neutral_dropped": sum(r.dropped_neutral for r in results),
        "empty_after_cleaning": empty,
        "duplicates_dropped": duplicates,
        "conflicting_labels_dropped": len(conflicting),
        "examples": len(examples),
        "labels": examples.counts(),
    }
    for r in results:
        if r.bad_rows:
            logger.warning("%s: %d bad rows skipped", r.path, r.bad_rows)
    return examples


@dataclass
class DataSplits:
    """Train / validation / test splits with the data report of the run."""

    train: Examples
    validation: Examples
    test: Examples
    report: dict[str, object]


def _subset(examples: Examples, index: list[int]) -> Examples:
    sources = [examples.sources[i] for i in index] if examples.sources else []
    titles = [examples.titles[i] for i in index] if examples.titles else []
    return Examples([examples.texts[i] for i in index], [examples.labels[i] for i in index], sources=sources,
                    titles=titles)


def _with_title_examples(train: Examples, excluded: set[str], seed: int, balance: bool) -> tuple[Examples, int]:
    """``train`` plus each review's title as a text of its own, with the review's label.

    Titles are short, sentence-like texts ("Works as advertised", "Waste of money"), which the full
    reviews alone do not teach. Only titles of training reviews are used; a title that is already a
    training text, occurs in held-out or evaluation data (``excluded`` keys), or appears under both
    labels is left out. With ``balance`` the titles are balanced too (the positive ones repeat more:
    "Five Stars", "Great").
    """
    if not any(train.titles):
        logger.warning("--title-examples: the training data has no titles (only Amazon reviews, Blitzer and "
                       "polarity CSV files carry them); no title examples added")
        return train, 0
    seen = {text_key(t) for t in train.texts}
    labels_by_key: dict[str, set[int]] = {}
    first: dict[str, tuple[str, int, str]] = {}
    for title, label, source in zip(train.titles, train.labels, train.sources or [""] * len(train), strict=True):
        key = text_key(title)
        if not key or key in seen or key in excluded:
            continue
        labels_by_key.setdefault(key, set()).add(label)
        first.setdefault(key, (title, label, source))
    added = [value for key, value in first.items() if len(labels_by_key[key]) == 1]
    if balance and added:
        by_label: dict[int, list[tuple[str, int, str]]] = {}
        for item in added:
            by_label.setdefault(item[1], []).append(item)
        per_label = min(len(v) for v in by_label.values()) if len(by_label) > 1 else 0
        rng = random.Random(seed)
        added = [item for label in sorted(by_label) for item in rng.sample(by_label[label], per_label)]
    if not added:
        return train, 0
    return Examples(
        train.texts + [t for t, _, _ in added], train.labels + [label for _, label, _ in added],
        sources=train.sources + [s for _, _, s in added] if train.sources else [],
        titles=train.titles + [""] * len(added) if train.titles else [],
    ), len(added)


def _sample(examples: Examples, n: int, seed: int, balance: bool) -> Examples:
    """At most ``n`` examples; with ``balance``, equal numbers per label (majority down-sampled)."""
    rng = random.Random(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(examples.labels):
        by_label.setdefault(label, []).append(i)
    if balance:
        per_label = min(len(v) for v in by_label.values())
        if n:
            per_label = min(per_label, n // len(by_label))
        chosen = [i for idx in by_label.values() for i in rng.sample(idx, per_label)]
    else:
        chosen = list(range(len(examples)))
        if n and n < len(chosen):
            chosen, _ = train_test_split(chosen, train_size=n, random_state=seed, stratify=examples.labels)
    rng.shuffle(chosen)
    return _subset(examples, sorted(chosen) if not balance else chosen)


def build_splits(
    examples: Examples,
    *,
    seed: int = 42,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    exclude_texts: list[str] | None = None,
    max_train_samples: int | None = None,
    balance: bool = False,
    sample_seed: int | None = None,
    train_sources: list[str] | None = None,
    title_examples: bool = False,
) -> DataSplits:
    """Stratified split; training texts also present in validation, test or ``exclude_texts`` are dropped.

    ``train_sources`` keeps only training texts read from files whose path contains one of the given
    strings; validation and test stay the split of the whole pool, so runs with and without it compare.
    ``title_examples`` adds the titles of the (sampled) training reviews as training texts of their own;
    validation and test stay whole reviews.
    """
    if len(set(examples.labels)) < 2:
        raise DataError(f"the data has only one label ({examples.counts()}); both classes are needed")
    index = list(range(len(examples)))
    held_fraction = validation_fraction + test_fraction
    train_idx, held_idx = train_test_split(
        index, test_size=held_fraction, random_state=seed, stratify=examples.labels
    )
    held_labels = [examples.labels[i] for i in held_idx]
    val_idx, test_idx = train_test_split(
        held_idx, test_size=test_fraction / held_fraction, random_state=seed, stratify=held_labels
    )
    validation, test = _subset(examples, val_idx), _subset(examples, test_idx)
    train = _subset(examples, sorted(train_idx))

    held_keys = {text_key(t) for t in validation.texts + test.texts}
    eval_keys = {text_key(t) for t in exclude_texts or []}
    excluded = held_keys | eval_keys
    train_keys = [text_key(t) for t in train.texts]
    keep = [i for i, key in enumerate(train_keys) if key not in excluded]
    overlap_eval = sum(1 for key in train_keys if key in eval_keys)
    dropped = len(train) - len(keep)
    train = _subset(train, keep)
    if dropped:
        logger.info("dropped %d training texts that also occur in held-out or evaluation data "
                    "(%d in --eval-data)", dropped, overlap_eval)
    if train_sources:
        if not examples.sources:
            raise DataError("--train-source needs examples read from files")
        chosen = [i for i, src in enumerate(train.sources) if any(part in src for part in train_sources)]
        if not chosen:
            raise DataError(f"--train-source {train_sources}: no training file path contains these strings")
        train = _subset(train, chosen)
        if len(set(train.labels)) < 2:
            raise DataError(f"--train-source {train_sources}: the chosen files hold only one label")
    pool = len(train)
    if max_train_samples or balance:
        train = _sample(train, max_train_samples or 0, seed if sample_seed is None else sample_seed, balance)
    reviews = len(train)
    added_titles = 0
    if title_examples:
        train, added_titles = _with_title_examples(train, excluded, seed if sample_seed is None else sample_seed,
                                                   balance)
    report = {
        **examples.report,
        "split_seed": seed,
        "train_pool": pool,
        "train": len(train),
        "train_reviews": reviews,
        "train_title_examples": added_titles,
        "train_labels": train.counts(),
        "validation": len(validation),
        "test": len(test),
        "train_dropped_overlap": dropped,
        "train_dropped_overlap_eval_sets": overlap_eval,
        "balanced": balance,
        "train_sources": list(train_sources or []),
    }
    return DataSplits(train, validation, test, report)
