"""Star-rated reviews and sentence-level labels: the data of the rating head and the four-way rules.

Ratings (1-5 stars, 3 included) come from ``ratings/`` (McAuley JSON lines) and from the pool's own
star ratings (Digital Software's ``star_rating``, Blitzer's ``unlabeled.review`` / ``*_all.review``).
The review *body* is the text: the 2018 files' titles are often generated from the rating ("Five
Stars"), which would teach the head to read the title, not the review.

Split (``rating_splits``): reviews of the binary validation or test split, of a held-out category or
of an evaluation set never train anything (containment on normalised text, as the binary pool's leak
check); the categories of ``TEST_SOURCES`` (the five 1,000-review category samples) are a test of
categories the head never saw; every other category is split 70 / 15 / 15 by star, and its training
part capped per star (one category must not decide the head), its validation and test parts too (the
cost of measuring, not of fitting).

Sentences (``read_sentence_labels``): SemEval-2014 / MAMS XML, one label per sentence from its aspect
terms as ../shared/data/README.md defines it (MIXED: a positive and a negative term, or a conflict one).
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from defusedxml import ElementTree as ET  # noqa: N817

from training.data.dataset import clean_text, text_key
from training.data.leaks import find_leaks
from training.data.readers import DataError, read_text_detect

logger = logging.getLogger(__name__)

STARS = (1, 2, 3, 4, 5)
SENTIMENTS = ("NEGATIVE", "NEUTRAL", "POSITIVE", "MIXED")
TEST_SOURCES = ("amazon_category_samples_2014",)
_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_RATING = re.compile(r"<rating>(.*?)</rating>", re.S)
_BODY = re.compile(r"<review_text>(.*?)</review_text>", re.S)
_CATEGORY_NAMES = {"mcauley2014_musical_instruments": "musical_instruments", "mcauley2018_all_beauty": "beauty",
                   "mcauley2018_amazon_fashion": "fashion", "amazon_us_reviews_digital_software": "digital_software"}


@dataclass
class Rated:
    """Review bodies with their stars (1-5), product category and source folder."""

    texts: list[str] = field(default_factory=list)
    stars: list[int] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def add(self, text: str, stars: object, category: str, source: str) -> bool:
        try:
            value = int(float(stars))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
        text = clean_text(text or "")
        if value not in STARS or not text:
            return False
        self.texts.append(text)
        self.stars.append(value)
        self.categories.append(category)
        self.sources.append(source)
        return True

    def subset(self, index: list[int]) -> Rated:
        return Rated([self.texts[i] for i in index], [self.stars[i] for i in index],
                     [self.categories[i] for i in index], [self.sources[i] for i in index])

    def counts(self) -> dict[str, int]:
        found = Counter(self.stars)
        return {str(s): found.get(s, 0) for s in STARS}

    def by_category(self) -> dict[str, dict[str, int]]:
        table: dict[str, Counter[int]] = defaultdict(Counter)
        for category, stars in zip(self.categories, self.stars, strict=True):
            table[category][stars] += 1
        return {c: {str(s): table[c].get(s, 0) for s in STARS} for c in sorted(table)}


def _json_lines(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        return [json.loads(line) for line in handle if line.strip()]


def read_ratings(paths: list[Path]) -> Rated:
    """Every star-rated review under ``paths`` (folders of ratings/, the Digital Software parquet folder, Blitzer
    files with ratings), de-duplicated on normalised text (the first copy is kept)."""
    rated, bad = Rated(), 0
    for root in paths:
        files = sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file())
        for path in files:
            source = path.parent.name
            if path.name.endswith((".json", ".json.gz")):
                for row in _json_lines(path):
                    category = _CATEGORY_NAMES.get(source) or path.name.split("_small")[0].lower()
                    bad += not rated.add(row.get("reviewText", ""), row.get("overall"), category, source)
            elif path.suffix == ".parquet":
                frame = pd.read_parquet(path, columns=["review_body", "star_rating"])
                for body, stars in zip(frame["review_body"].tolist(), frame["star_rating"].tolist(), strict=True):
                    bad += not rated.add(body if isinstance(body, str) else "", stars, "digital_software",
                                         source)
            elif path.name in ("unlabeled.review",) or path.name.endswith("_all.review"):
                category = path.parent.name
                for block in _REVIEW.findall(read_text_detect(path)):
                    rating, body = _RATING.search(block), _BODY.search(block)
                    bad += not rated.add(body.group(1) if body else "", rating.group(1) if rating else None, category,
                                         f"blitzer/{path.name}")
    if not rated.texts:
        raise DataError(f"no star-rated reviews under {[str(p) for p in paths]}")
    seen: set[str] = set()
    keep = []
    for index, text in enumerate(rated.texts):
        key = text_key(text)
        if key and key not in seen:
            seen.add(key)
            keep.append(index)
    logger.info("ratings: %d reviews read, %d duplicates dropped, %d unusable rows", len(rated), len(rated) - len(keep),
                bad)
    return rated.subset(keep)


@dataclass
class RatingSplits:
    train: Rated
    validation: Rated
    test: Rated  # categories the head trains on, reviews it did not see
    unseen: Rated  # categories the head never saw (TEST_SOURCES)
    report: dict


def rating_splits(rated: Rated, excluded_texts: list[str], *, seed: int = 42, cap_per_star: int = 1500,
                  held_cap_per_star: int = 300, validation_fraction: float = 0.15, test_fraction: float = 0.15,
                  excluded_categories: tuple[str, ...] = ()) -> RatingSplits:
    """Train / validation / test by category and star, plus the unseen-category test (see the module)."""
    keys = {text_key(t) for t in excluded_texts}
    leaks = find_leaks(rated.texts, excluded_texts).dropped
    clean = [i for i, t in enumerate(rated.texts) if i not in leaks and text_key(t) not in keys]
    dropped = len(rated) - len(clean)
    unseen = rated.subset([i for i in clean if rated.sources[i] in TEST_SOURCES])
    # ``excluded_categories`` (e.g. the unseen samples' categories) leave the pool, not the unseen test
    pool = [i for i in clean if rated.sources[i] not in TEST_SOURCES and rated.categories[i] not in excluded_categories]
    # A review of an unseen-category sample that also sits in the pool stays a test review only.
    unseen_leaks = find_leaks([rated.texts[i] for i in pool], unseen.texts).dropped
    pool = [i for n, i in enumerate(pool) if n not in unseen_leaks]
    rng = random.Random(seed)
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i in pool:
        groups[(rated.categories[i], rated.stars[i])].append(i)
    train, validation, test = [], [], []
    for key in sorted(groups):
        members = groups[key]
        rng.shuffle(members)
        n_val = round(len(members) * validation_fraction)
        n_test = round(len(members) * test_fraction)
        validation += members[:n_val][:held_cap_per_star]
        test += members[n_val:n_val + n_test][:held_cap_per_star]
        train += members[n_val + n_test:][:cap_per_star]
    splits = RatingSplits(rated.subset(sorted(train)), rated.subset(sorted(validation)), rated.subset(sorted(test)),
                          unseen, {})
    splits.report = {
        "read": len(rated), "dropped_binary_heldout_or_eval": dropped, "dropped_inside_unseen_test": len(unseen_leaks),
        "cap_per_star": cap_per_star, "held_cap_per_star": held_cap_per_star, "seed": seed,
        "excluded_categories": list(excluded_categories),
        "train": splits.train.by_category(), "validation": splits.validation.by_category(),
        "test": splits.test.by_category(), "unseen": splits.unseen.by_category(),
    }
    return splits


@dataclass
class Sentences:
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)  # POSITIVE / NEGATIVE / NEUTRAL / MIXED


def sentence_label(polarities: list[str]) -> str | None:
    """The sentence label of ../shared/data/README.md from its aspect terms' polarities (None: no terms)."""
    if not polarities:
        return None
    found = set(polarities)
    if "conflict" in found or {"positive", "negative"} <= found:
        return "MIXED"
    if "positive" in found:
        return "POSITIVE"
    if "negative" in found:
        return "NEGATIVE"
    return "NEUTRAL"


def read_sentence_labels(path: Path) -> Sentences:
    """SemEval-2014 / MAMS XML: each sentence with aspect terms, labelled from them."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise DataError(f"{path}: not SemEval/MAMS XML ({exc})") from exc
    out = Sentences()
    for sentence in root.iter("sentence"):
        text = (sentence.findtext("text") or "").strip()
        label = sentence_label([t.get("polarity", "") for t in sentence.iter("aspectTerm")])
        if text and label:
            out.texts.append(text)
            out.labels.append(label)
    if not out.texts:
        raise DataError(f"{path}: no <sentence> with aspect terms")
    return out
