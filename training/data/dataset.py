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
_SKIP_SUFFIXES = {".md", ".json", ".yaml", ".yml", ".py"}


def _is_data_file(path: Path) -> bool:
    """Every file in a data folder is read, except documentation; one whose format cannot be told stops the run."""
    return (path.is_file() and not path.name.startswith(".") and path.stem.lower() not in _SKIP_NAMES
            and path.suffix.lower() not in _SKIP_SUFFIXES)


def clean_text(text: str) -> str:
    """HTML entities and tags out, ``<br>`` to spaces, whitespace collapsed."""
    text = unescape(text)
    text = _BR.sub(" ", text)
    text = _TAG.sub("", text)
    text = text.replace('\\"', '"')
    return _SPACE.sub(" ", text).strip()


_NOT_ALNUM = re.compile(r"[\W_]+")


def text_key(text: str) -> str:
    """Key under which two texts count as the same: lowercase letters and digits only.

    Case, spacing, punctuation and tokenization are ignored, so ``I've`` (raw), ``I 've`` (McAuley) and
    ``i 've`` (FDU-MTL) give the same key.
    """
    return _NOT_ALNUM.sub("", text.lower().replace("\u2019", "'"))


# How much a source's copy of a review was processed: of several copies the least processed one is kept.
PROCESSING_RANK = {"amazon-reviews": 0, "blitzer": 0, "csv": 0, "polarity-csv": 0, "fasttext": 0, "video-download": 0,
                   "hatn": 1, "uci": 1, "sst2": 1, "vader": 1, "mcauley": 2, "cr": 3, "fdu-mtl": 3}
_PREFIX_CHARS = 64  # a copy cut short (FDU-MTL truncates long reviews) still shares the first 64 key characters
_CATEGORY_ALIASES = {"kitchen": "kitchen_housewares", "grocery_gourmet_food": "grocery",
                     "clothing_shoes_jewelry": "apparel"}
_FILE_ONLY_NAMES = {"positive", "negative", "unlabeled", "review_positive", "review_negative"}


def category_of(path: Path) -> str:
    """Product category from the file and folder names.

    ``Books_train.tsv`` -> ``books``, ``toys_games.task.train`` -> ``toys_games``, ``grocery_all.review`` ->
    ``grocery``, ``books/positive.review`` -> ``books``, ``amazon_us_reviews_digital_software/part-0.parquet``
    -> ``digital_software``. Names are lowercased, ``_and_`` dropped and a few synonyms of the sources
    merged (``kitchen`` = ``kitchen_housewares``), so one category collects every source's reviews.
    """
    name = path.name.split(".")[0]
    name = re.sub(r"_(train|dev|test|all)$", "", name)
    if name.lower() in _FILE_ONLY_NAMES or name.lower().startswith("part-") or not name:
        name = path.parent.name
    name = re.sub(r"^amazon_us_reviews_", "", name.lower()).replace("_and_", "_")
    return _CATEGORY_ALIASES.get(name, name)


def _dedup_keys(text: str, title: str, fmt: str) -> list[str]:
    """The keys under which ``text`` is looked up: the whole text, and the start of its body.

    A source may drop the title (FDU-MTL, McAuley) or cut a long review short (FDU-MTL); the body's
    first ``_PREFIX_CHARS`` key characters still match the full copy. HATN joins title and body with
    ". " without saying where the title ends: the first two such points are tried.
    """
    key = text_key(text)
    bodies = [key]
    title_key = text_key(title) if title else ""
    if title_key and key.startswith(title_key):
        bodies.append(key[len(title_key):])
    if fmt == "hatn":
        parts = text.split(". ", 2)
        bodies += [text_key(". ".join(parts[i:])) for i in range(1, len(parts))]
    keys = [key]
    keys += [f"^{body[:_PREFIX_CHARS]}" for body in bodies if len(body) >= _PREFIX_CHARS]
    return list(dict.fromkeys(keys))


@dataclass
class Examples:
    """Cleaned texts and labels, with a report of what was read and dropped."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    report: dict[str, object] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # file each text was read from (empty when unknown)
    titles: list[str] = field(default_factory=list)  # each review's cleaned title ("" when none; empty when unknown)
    categories: list[str] = field(default_factory=list)  # each text's product category (empty when unknown)
    datasets: list[str] = field(default_factory=list)  # the data set (folder under --data) each text came from

    def __len__(self) -> int:
        return len(self.texts)

    def counts(self) -> dict[str, int]:
        counter = Counter(self.labels)
        return {"negative": counter.get(0, 0), "positive": counter.get(1, 0)}


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files named directly, plus every data file found under named directories."""
    return [file for file, _ in expand_with_sources(paths)]


def expand_with_sources(paths: list[Path]) -> list[tuple[Path, str]]:
    """Each data file with its data set's name: the folder under a named directory it sits in.

    ``--data ../shared/data/train`` gives ``mcauley_24_categories`` for every file under that folder; a
    file named directly, or lying directly in a named folder, takes its parent folder's name.
    """
    found: list[tuple[Path, str]] = []
    for path in paths:
        for file in _expand_one(path):
            relative = file.relative_to(path).parts if path.is_dir() else ()
            found.append((file, relative[0] if len(relative) > 1 else file.parent.name))
    return found


def _expand_one(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if _is_data_file(p))
        if not found:
            raise DataError(f"{path}: directory holds no data files")
        return found
    if path.exists():
        return [path]
    raise DataError(f"{path}: no such file or directory")


def load_examples(paths: list[Path], fmt: str = "auto", spec: LabelSpec | None = None) -> Examples:
    """Read, clean and de-duplicate every file across sources; conflicting duplicates are dropped entirely.

    Copies of one review are found on ``text_key`` (and on the start of the body, ``_dedup_keys``);
    of several copies the least processed is kept (``PROCESSING_RANK``: raw reviews before tokenized or
    lowercased ones), and what each data set lost to duplicates is counted in the report.
    """
    results: list[ReadResult] = []
    for path, source in expand_with_sources(paths):
        result = read_file(path, fmt, spec)
        result.source, result.category = source, category_of(path)
        results.append(result)
    kept: list[tuple[str, int, ReadResult, str]] = []  # text, label, where from, title
    owner: dict[str, int] = {}  # dedup key -> index into kept
    conflicting: set[int] = set()
    duplicates: Counter[str] = Counter()
    empty = 0
    ranked = sorted(range(len(results)), key=lambda i: PROCESSING_RANK.get(results[i].fmt, 1))  # stable: file order
    for result in (results[i] for i in ranked):
        titles = result.titles or [""] * len(result.texts)
        for raw, label, title in zip(result.texts, result.labels, titles, strict=True):
            text = clean_text(raw)
            if not text:
                empty += 1
                continue
            title = clean_text(title) if title else ""
            keys = _dedup_keys(text, title, result.fmt)
            match = next((owner[k] for k in keys if k in owner), None)
            if match is not None:
                duplicates[result.source] += 1
                if kept[match][1] != label:
                    conflicting.add(match)
                continue
            for k in keys:
                owner[k] = len(kept)
            kept.append((text, label, result, title))
    examples = Examples()
    for index, (text, label, result, title) in enumerate(kept):
        if index not in conflicting:
            examples.texts.append(text)
            examples.labels.append(label)
            examples.sources.append(str(result.path))
            examples.titles.append(title)
            examples.categories.append(result.category)
            examples.datasets.append(result.source)
    per_source: dict[str, dict[str, int]] = {}
    for r in results:
        entry = per_source.setdefault(r.source, {"rows": 0, "duplicates_dropped": 0, "kept": 0})
        entry["rows"] += len(r.texts)
    for source, count in duplicates.items():
        per_source[source]["duplicates_dropped"] = count
    for source in examples.datasets:
        per_source[source]["kept"] += 1
    examples.report = {
        "files": [
            {"path": str(r.path), "format": r.fmt, "source": r.source, "category": r.category, "rows": len(r.texts),
             "bad_rows": r.bad_rows, "neutral_dropped": r.dropped_neutral}
            for r in results
        ],
        "sources": per_source,
        "bad_rows": sum(r.bad_rows for r in results),
        "neutral_dropped": sum(r.dropped_neutral for r in results),
        "empty_after_cleaning": empty,
        "duplicates_dropped": sum(duplicates.values()),
        "conflicting_labels_dropped": len(conflicting),
        "examples": len(examples),
        "labels": examples.counts(),
    }
    for r in results:
        if r.bad_rows:
            logger.warning("%s: %d bad rows skipped", r.path, r.bad_rows)
    return examples


def drop_eval_leaks(examples: Examples, eval_texts: list[str]) -> Examples:
    """``examples`` without the texts that contain (most of) an evaluation text or sit inside one (``leaks``).

    Run on the whole pool before splitting, so validation and test are as clean as training. The counts
    go into the report (``leaks``), per data set too.
    """
    from training.data.leaks import MIN_WORDS, NGRAM, SHARE, find_leaks

    found = find_leaks(examples.texts, eval_texts)
    dropped = found.dropped
    keep = [i for i in range(len(examples)) if i not in dropped]
    cleaned = _subset(examples, keep)
    by_source = Counter(examples.datasets[i] for i in dropped) if examples.datasets else Counter()
    cleaned.report = {**examples.report, "examples": len(cleaned), "labels": cleaned.counts(), "leaks": {
        "method": f"word {NGRAM}-grams on lowercase letters and digits, texts of {MIN_WORDS}+ words; a training "
                  f"text is dropped when it holds >= {SHARE:.0%} of an evaluation text's n-grams or >= {SHARE:.0%} "
                  "of its own come from one (shorter texts: equality only)",
        "contains_eval_text": len(found.contains_eval), "inside_eval_text": len(found.inside_eval),
        "dropped": len(dropped), "by_source": dict(sorted(by_source.items())),
        "eval_texts_checked": found.checked_eval_texts}}
    for source, count in by_source.items():
        cleaned.report["sources"][source]["leaks_dropped"] = count  # type: ignore[index]
    return cleaned


@dataclass
class DataSplits:
    """Train / validation / test splits with the data report of the run."""

    train: Examples
    validation: Examples
    test: Examples
    report: dict[str, object]
    heldout: dict[str, Examples] = field(default_factory=dict)  # held-out category -> all of its examples


_MIN_STRATUM = 20  # smaller category-label groups are stratified by label only


def _strata(examples: Examples) -> list[str]:
    """Stratification key: category and label (rare categories: label only), so every split covers each category."""
    if not examples.categories:
        return [str(label) for label in examples.labels]
    keys = [f"{c}|{label}" for c, label in zip(examples.categories, examples.labels, strict=True)]
    counts = Counter(keys)
    return [k if counts[k] >= _MIN_STRATUM else k.split("|")[1] for k in keys]


def _cap_per_category(examples: Examples, cap: int, seed: int) -> Examples:
    """At most ``cap`` examples per (category, label), drawn at random; order otherwise kept."""
    rng = random.Random(seed)
    groups: dict[tuple[str, int], list[int]] = {}
    for i, (category, label) in enumerate(zip(examples.categories, examples.labels, strict=True)):
        groups.setdefault((category, label), []).append(i)
    chosen = sorted(i for idx in groups.values() for i in (rng.sample(idx, cap) if len(idx) > cap else idx))
    return _subset(examples, chosen)


def _subset(examples: Examples, index: list[int]) -> Examples:
    def pick(values: list[str]) -> list[str]:
        return [values[i] for i in index] if values else []

    return Examples([examples.texts[i] for i in index], [examples.labels[i] for i in index],
                    sources=pick(examples.sources), titles=pick(examples.titles),
                    categories=pick(examples.categories), datasets=pick(examples.datasets))


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
    origin: dict[str, int] = {}  # title key -> the review it came from (its category and data set)
    for i, (title, label, source) in enumerate(zip(train.titles, train.labels, train.sources or [""] * len(train),
                                                   strict=True)):
        key = text_key(title)
        if not key or key in seen or key in excluded:
            continue
        labels_by_key.setdefault(key, set()).add(label)
        if key not in first:
            first[key], origin[title] = (title, label, source), i
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
        categories=train.categories + [train.categories[origin[t]] for t, _, _ in added] if train.categories else [],
        datasets=train.datasets + [train.datasets[origin[t]] for t, _, _ in added] if train.datasets else [],
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


def _draw(train: Examples, cap: int, max_train_samples: int | None, seed: int, balance: bool) -> Examples:
    """The training sample that ``build_splits`` draws with ``category_cap=cap`` and ``seed`` (no titles)."""
    drawn = _cap_per_category(train, cap, seed)
    if max_train_samples or balance:
        drawn = _sample(drawn, max_train_samples or 0, seed, balance)
    return drawn


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
    holdout_categories: list[str] | None = None,
    category_cap: int | None = None,
    after_sample: int | None = None,
) -> DataSplits:
    """Stratified split; training texts also present in validation, test or ``exclude_texts`` are dropped.

    ``train_sources`` keeps only training texts read from files whose path contains one of the given
    strings; validation and test stay the split of the whole pool, so runs with and without it compare.
    ``title_examples`` adds the titles of the (sampled) training reviews as training texts of their own;
    validation and test stay whole reviews. The split is stratified by product category and label.
    ``holdout_categories`` are taken out of the pool before splitting (no training, no validation, no
    test): ``DataSplits.heldout`` holds them, for the out-of-category figure. ``category_cap`` limits the
    training texts per category and label before any ``max_train_samples`` / ``balance`` sampling.
    ``after_sample`` (continued training) first leaves out the reviews that the same call with
    ``category_cap=after_sample`` and ``sample_seed=None`` would have drawn, so a second stage trains only
    on reviews the first stage did not see; validation and test do not change.
    """
    heldout: dict[str, Examples] = {}
    pool_report = examples.report  # what was read and dropped, before any category leaves the pool
    if holdout_categories:
        if not examples.categories:
            raise DataError("--holdout-category needs examples read from files (their categories)")
        unknown = sorted(set(holdout_categories) - set(examples.categories))
        if unknown:
            raise DataError(f"--holdout-category {unknown}: no such category in the data; it has "
                            f"{sorted(set(examples.categories))}")
        for category in holdout_categories:
            heldout[category] = _subset(examples, [i for i, c in enumerate(examples.categories) if c == category])
        examples = _subset(examples, [i for i, c in enumerate(examples.categories) if c not in set(holdout_categories)])
    if len(set(examples.labels)) < 2:
        raise DataError(f"the data has only one label ({examples.counts()}); both classes are needed")
    index = list(range(len(examples)))
    strata = _strata(examples)
    held_fraction = validation_fraction + test_fraction
    train_idx, held_idx = train_test_split(
        index, test_size=held_fraction, random_state=seed, stratify=strata
    )
    held_strata = [strata[i] for i in held_idx]
    counts = Counter(held_strata)
    held_strata = [k if counts[k] >= 2 else k.split("|")[-1] for k in held_strata]
    val_idx, test_idx = train_test_split(
        held_idx, test_size=test_fraction / held_fraction, random_state=seed, stratify=held_strata
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
    earlier = 0
    if after_sample:
        if not train.categories:
            raise DataError("--after-sample needs examples read from files (their categories)")
        seen = _draw(train, after_sample, max_train_samples, seed, balance)
        seen_keys = {text_key(t) for t in seen.texts}
        train = _subset(train, [i for i, t in enumerate(train.texts) if text_key(t) not in seen_keys])
        earlier = len(seen)
    pool = len(train)
    if category_cap:
        if not train.categories:
            raise DataError("--category-cap needs examples read from files (their categories)")
        train = _cap_per_category(train, category_cap, seed if sample_seed is None else sample_seed)
    if max_train_samples or balance:
        train = _sample(train, max_train_samples or 0, seed if sample_seed is None else sample_seed, balance)
    reviews = len(train)
    added_titles = 0
    if title_examples:
        train, added_titles = _with_title_examples(train, excluded, seed if sample_seed is None else sample_seed,
                                                   balance)
    report = {
        **pool_report,
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
        "category_cap": category_cap,
        "after_sample": after_sample,
        "train_left_out_earlier_sample": earlier,
        "holdout_categories": {c: len(e) for c, e in heldout.items()},
        "categories": _category_counts(train, validation, test),
    }
    return DataSplits(train, validation, test, report, heldout)


def _category_counts(train: Examples, validation: Examples, test: Examples) -> dict[str, dict[str, int]]:
    """Texts per product category in each split."""
    table: dict[str, dict[str, int]] = {}
    for split, part in (("train", train), ("validation", validation), ("test", test)):
        for category, count in Counter(part.categories).items():
            table.setdefault(category, {"train": 0, "validation": 0, "test": 0})[split] = count
    return dict(sorted(table.items()))
