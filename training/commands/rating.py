"""`rating`: the star-rating head and the four-way rules for a finished model directory (its encoder frozen).

1. Rebuild the binary split from model.json; read the star-rated reviews and split them
   (``training.data.fourway``): nothing of the binary validation/test split, a held-out category or an
   evaluation set trains anything.
2. Features of the frozen encoder (PyTorch, cut as the runtime cuts), cached in the work directory.
3. The head (``training.steps.rating.fit_head``), chosen on validation.
4. The four-way biases: ``review`` on the rating validation split (NEGATIVE / NEUTRAL / POSITIVE macro-F1,
   MIXED counted as NEUTRAL, stars weighted equally), ``sentence`` on SemEval-2014 restaurant training
   sentences (four-class macro-F1).
5. Report on what was not used to fit: the rating test split, the unseen categories, the restaurant test
   sentences and MAMS validation sentences.
6. Write the head beside the PyTorch weights, export both artifacts with it (``export --rating-head``) and
   record everything in model.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from app.fourway import SENTIMENTS, apply_bias, expected_stars, mixed_evidence, sentiment_of
from app.model import calibration_temperature, scaled_softmax
from app.segments import parts, sentences
from training.data.fourway import Rated, RatingSplits, Sentences, rating_splits, read_ratings, read_sentence_labels
from training.data.splits import rebuild_splits
from training.steps.calibrate import reliability
from training.steps.rating import (
    BIAS_GRID,
    HEAD_FILE,
    FeatureExtractor,
    f1_table,
    fit_bias,
    fit_head,
    raw_for,
    save_head,
    star_metrics,
    star_probabilities,
    star_weights,
    stars_to_sentiment,
    three_way,
)

logger = logging.getLogger(__name__)

# Blitzer's unlabeled.review copies here hold only 4- and 5-star reviews, and grocery_all.review no 3-star ones:
# they would teach a category's rating mix, not how a review reads. Not used.
DEFAULT_RATINGS = [Path("../shared/data/ratings"), Path("../shared/data/train/amazon_us_reviews_digital_software")]
DEFAULT_SENTENCES = Path("../shared/data/sentences")
# The unseen-category samples' categories stay out of training whatever other source holds them.
EXCLUDED_CATEGORIES = ("books", "clothing", "electronics", "grocery", "patio")
SPLIT_VERSION = 2  # bump when rating_splits changes what it returns: a cached split of the old rule is not reused


class Encoded:
    """Features and calibrated binary probabilities of texts, computed once per text and cached on disk."""

    def __init__(self, extractor: FeatureExtractor, cache: Path, temperature: float) -> None:
        self.extractor, self.cache, self.temperature = extractor, cache, temperature
        cache.mkdir(parents=True, exist_ok=True)

    def __call__(self, texts: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
        digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        path = self.cache / f"{name}-{digest}.npz"
        if path.is_file():
            with np.load(path) as data:
                return data["features"], data["logits"]
        features, logits = self.extractor(texts, desc=name)
        np.savez(path, features=features, logits=logits)
        return features, logits


def _cached_split(work: Path, rated: Rated, excluded: list[str], cap_per_star: int,
                  excluded_categories: tuple[str, ...]) -> RatingSplits:
    """``rating_splits``, reused from the work directory when its inputs are the same (its leak check takes minutes)."""
    digest = hashlib.sha256()
    for text, stars in zip(rated.texts, rated.stars, strict=True):
        digest.update(f"{stars}\t{text}\n".encode())
    digest.update("\n".join(excluded).encode())
    digest.update(json.dumps([SPLIT_VERSION, cap_per_star, list(excluded_categories)]).encode())
    key = digest.hexdigest()[:16]
    path = work / "split.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            logger.info("rating split reused from %s", path)
            return RatingSplits(**{name: Rated(**cached[name]) for name in ("train", "validation", "test", "unseen")},
                                report=cached["report"])
    split = rating_splits(rated, excluded, cap_per_star=cap_per_star, excluded_categories=excluded_categories)
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "report": split.report,
                                **{name: asdict(getattr(split, name)) for name in ("train", "validation", "test",
                                                                                   "unseen")}}))
    return split


def _unit_scores(encoded: Encoded, texts: list[str], name: str, head: dict, positive: int, negative: int,
                 temperature: float) -> dict[str, np.ndarray]:
    """Per text: binary probabilities, star probabilities, MIXED evidence from its parts, sentence counts."""
    features, logits = encoded(texts, name)
    binary = scaled_softmax(logits, temperature)
    stars_p = star_probabilities(features, head["weight"], head["bias"])
    pieces = [[text[s.start:s.end] for s in parts(text)] for text in texts]
    unique = sorted({p for group in pieces if len(group) > 1 for p in group})
    part_probs: dict[str, np.ndarray] = {}
    if unique:
        _, part_logits = encoded(unique, f"{name}-parts")
        part_probs = dict(zip(unique, scaled_softmax(part_logits, temperature), strict=True))
    mixed = np.array([mixed_evidence(np.array([part_probs[p] for p in group]), positive, negative)
                      if len(group) > 1 else 0.0 for group in pieces])
    counts = np.array([len(sentences(text)) for text in texts])
    return {"binary": binary, "stars": stars_p, "mixed": mixed, "sentences": counts,
            "raw": raw_for(binary, positive, negative, stars_p, mixed)}


def _review_report(scores: dict[str, np.ndarray], stars: list[int], categories: list[str],
                   bias: dict[str, dict[str, float]]) -> dict:
    truth = stars_to_sentiment(stars)
    predicted = _predict(scores, bias)
    weights = star_weights(np.asarray(stars))
    report = {"stars": star_metrics(scores["stars"], np.asarray(stars)),
              "three_way": f1_table(truth, three_way(predicted), ("NEGATIVE", "NEUTRAL", "POSITIVE")),
              "three_way_star_balanced": f1_table(truth, three_way(predicted), ("NEGATIVE", "NEUTRAL", "POSITIVE"),
                                                  weights),
              "predicted": {s: predicted.count(s) for s in SENTIMENTS},
              "by_category": {}}
    for category in sorted(set(categories)):
        index = [i for i, c in enumerate(categories) if c == category]
        sub = np.asarray(stars)[index]
        report["by_category"][category] = {
            **star_metrics(scores["stars"][index], sub),
            "three_way_macro_f1": f1_table([truth[i] for i in index], three_way([predicted[i] for i in index]),
                                           ("NEGATIVE", "NEUTRAL", "POSITIVE"))["macro"]["f1"]}
    return report


def _predict(scores: dict[str, np.ndarray], bias: dict[str, dict[str, float]]) -> list[str]:
    out = []
    vectors = {rule: np.array([values[s] for s in SENTIMENTS]) for rule, values in bias.items()}
    for raw, count in zip(scores["raw"], scores["sentences"], strict=True):
        rule = "sentence" if count <= 1 else "review"
        out.append(sentiment_of(apply_bias(raw[None, :], vectors[rule]))[0])
    return out


def _sentence_report(scores: dict[str, np.ndarray], sentences_: Sentences, bias: dict[str, dict[str, float]]) -> dict:
    predicted = _predict(scores, bias)
    classes = sorted(set(sentences_.labels), key=SENTIMENTS.index)
    return {"four_way": f1_table(sentences_.labels, predicted, classes),
            "predicted": {s: predicted.count(s) for s in SENTIMENTS}, "n": len(predicted)}


def _four_way_reliability(scores: dict[str, np.ndarray], truth: list[str], bias: dict[str, dict[str, float]]) -> dict:
    """Reliability of the top four-way score (is a 0.8 right 80 % of the time?) on labelled sentences."""
    vectors = {rule: np.array([values[s] for s in SENTIMENTS]) for rule, values in bias.items()}
    top = np.array([apply_bias(raw[None, :], vectors["sentence" if c <= 1 else "review"])[0]
                    for raw, c in zip(scores["raw"], scores["sentences"], strict=True)])
    labels = np.array([SENTIMENTS.index(t) for t in truth])
    return reliability(top, labels)


def fit_rating(model_dir: Path, work: Path, ratings: list[Path] | None = None, sentence_dir: Path | None = None,
               cap_per_star: int = 1500) -> tuple[dict, dict[str, tuple[list[str], list]]]:
    """Steps 1-5 of the module: the head and the rules, fitted and measured. Returns the model.json entries and
    the sets they were measured on (texts, stars or sentence labels)."""
    started = time.perf_counter()
    ratings = ratings or DEFAULT_RATINGS
    sentence_dir = sentence_dir or DEFAULT_SENTENCES
    metadata, splits, eval_sets = rebuild_splits(model_dir)
    excluded = splits.validation.texts + splits.test.texts + [t for s in eval_sets.values() for t in s.texts]
    heldout = tuple(metadata["training"]["config"].get("holdout_category") or ())
    rated = read_ratings(ratings)
    split = _cached_split(work, rated, excluded, cap_per_star, EXCLUDED_CATEGORIES + heldout)
    logger.info("rating split: train %s, validation %s, test %s, unseen %s", split.train.counts(),
                split.validation.counts(), split.test.counts(), split.unseen.counts())
    temperature = calibration_temperature(metadata)
    labels = list(metadata["labels"])
    positive, negative = labels.index("POSITIVE"), labels.index("NEGATIVE")
    encoded = Encoded(FeatureExtractor(model_dir, metadata), work / "features", temperature)
    train_x, _ = encoded(split.train.texts, "ratings-train")
    val_x, _ = encoded(split.validation.texts, "ratings-validation")
    head = fit_head(train_x, np.asarray(split.train.stars), val_x, np.asarray(split.validation.stars))
    save_head(work / HEAD_FILE, head["weight"], head["bias"])

    def units(texts: list[str], name: str) -> dict[str, np.ndarray]:
        return _unit_scores(encoded, texts, name, head, positive, negative, temperature)

    validation = units(split.validation.texts, "ratings-validation")
    truth = stars_to_sentiment(split.validation.stars)
    review_bias, review_f1 = fit_bias(validation["raw"], truth, ("NEGATIVE", "NEUTRAL", "POSITIVE"), True,
                                      star_weights(np.asarray(split.validation.stars)))
    restaurants = read_sentence_labels(sentence_dir / "semeval14_restaurants" / "Restaurants_Train_v2.xml")
    rest_scores = units(restaurants.texts, "restaurants-train")
    sentence_bias, sentence_f1 = fit_bias(rest_scores["raw"], restaurants.labels, SENTIMENTS, False)
    bias = {"sentence": sentence_bias, "review": review_bias}
    logger.info("four-way biases: sentence %s (restaurant train macro-F1 %.4f), review %s (rating validation "
                "3-way macro-F1 %.4f)", sentence_bias, sentence_f1, review_bias, review_f1)

    test = units(split.test.texts, "ratings-test")
    unseen = units(split.unseen.texts, "ratings-unseen")
    rest_test = read_sentence_labels(sentence_dir / "semeval14_restaurants" / "Restaurants_Test_Gold.xml")
    mams_val = read_sentence_labels(sentence_dir / "mams_atsa" / "val.xml")
    rest_test_scores = units(rest_test.texts, "restaurants-test")
    mams_scores = units(mams_val.texts, "mams-val")
    metrics = {
        "validation": _review_report(validation, split.validation.stars, split.validation.categories, bias),
        "test": _review_report(test, split.test.stars, split.test.categories, bias),
        "unseen_categories": _review_report(unseen, split.unseen.stars, split.unseen.categories, bias),
        "restaurants_test": _sentence_report(rest_test_scores, rest_test, bias),
        "mams_val": _sentence_report(mams_scores, mams_val, bias),
    }
    entries = {
        "rating_head": {
            "file": f"pytorch/{HEAD_FILE}", "input": "ReLU(pre_classifier([CLS])), the binary classifier's input",
            "output": "star_logits", "stars": [1, 2, 3, 4, 5], "C": head["C"], "tried": head["tried"],
            "fitted_on": "rating train split; C chosen by validation MAE with every star weighted equally",
            "split": split.report,
        },
        "four_way": {
            "bias": bias,
            "fitted_on": {"sentence": f"SemEval-2014 restaurant training sentences ({len(restaurants.texts)}), "
                                      f"four-class macro-F1 {sentence_f1:.4f}",
                          "review": f"rating validation split ({len(split.validation)}), NEGATIVE/NEUTRAL/POSITIVE "
                                    f"macro-F1 with MIXED as NEUTRAL and stars weighted equally {review_f1:.4f}"},
            "grid": {"from": float(BIAS_GRID.min()), "to": float(BIAS_GRID.max()), "step": 0.25},
            "metrics": metrics,
            "reliability": {"restaurants_test": _four_way_reliability(rest_test_scores, rest_test.labels, bias)},
            "measured_with": "PyTorch fp32 features (the artifacts' int8 figures: model.json metrics after export)",
        },
    }
    (work / "rating.json").write_text(json.dumps(entries, indent=2) + "\n")
    logger.info("rating head and four-way rules fitted and measured in %.0f s; %s", time.perf_counter() - started,
                work / "rating.json")
    sets = {"unseen_categories": (split.unseen.texts, split.unseen.stars), "test": (split.test.texts, split.test.stars),
            "restaurants_test": (rest_test.texts, rest_test.labels), "mams_val": (mams_val.texts, mams_val.labels)}
    return entries, sets


def _summary(entries: dict) -> dict:
    metrics = entries["four_way"]["metrics"]
    return {"C": entries["rating_head"]["C"], "bias": entries["four_way"]["bias"],
            **{name: {"stars": m["stars"], "three_way_macro_f1": m["three_way"]["macro"]["f1"],
                      "neutral": m["three_way"]["NEUTRAL"]}
               for name, m in metrics.items() if "stars" in m},
            **{name: {"four_way": m["four_way"]} for name, m in metrics.items() if "four_way" in m}}


def _star_parity(model_dir: Path, work: Path, texts: list[str], entries: dict) -> dict[str, float]:
    """Star probabilities of both artifacts against the head applied to the PyTorch features (the fitted head)."""
    from app.model import SentimentModel
    from training.steps.rating import load_head

    metadata = json.loads((model_dir / "model.json").read_text())
    features, _ = Encoded(FeatureExtractor(model_dir, metadata), work / "features", 1.0)(texts, "parity")
    weight, bias = load_head(work / HEAD_FILE)
    reference = star_probabilities(features, weight, bias)
    saved = SentimentModel(model_dir, "savedmodel").predict_stars(texts)
    lite = SentimentModel(model_dir, "tflite").predict_stars(texts)
    return {"texts": len(texts),
            "savedmodel_vs_pytorch_max_star_probability_difference": round(float(np.abs(saved - reference).max()), 6),
            "tflite_vs_savedmodel_max_star_probability_difference": round(float(np.abs(lite - saved).max()), 6),
            "tflite_vs_savedmodel_max_expected_stars_difference":
                round(float(np.abs(expected_stars(lite) - expected_stars(saved)).max()), 4)}


def _runtime_metrics(model_dir: Path, backend: str, sets: dict[str, tuple[list[str], list]]) -> dict:
    """The four-way figures as the service computes them (``SentimentModel.predict``, this backend)."""
    from app.model import SentimentModel

    model = SentimentModel(model_dir, backend)
    out = {}
    for name, (texts, truth) in sets.items():
        predictions = []
        for start in range(0, len(texts), 256):
            predictions += model.predict(texts[start:start + 256])
        sentiment = [p.sentiment for p in predictions]
        if truth and isinstance(truth[0], int):  # stars
            stars_p = np.array([[p.star_scores[k] for k in ("1", "2", "3", "4", "5")] for p in predictions])
            out[name] = {"stars": star_metrics(stars_p, np.asarray(truth)),
                         "three_way": f1_table(stars_to_sentiment(truth), three_way(sentiment),
                                               ("NEGATIVE", "NEUTRAL", "POSITIVE"))}
        else:
            out[name] = {"four_way": f1_table(truth, sentiment, sorted(set(truth), key=SENTIMENTS.index))}
    return out


def _binary_difference(before: dict[str, np.ndarray], model_dir: Path, texts: list[str]) -> dict[str, float]:
    from app.model import SentimentModel

    return {backend: float(np.max(np.abs(SentimentModel(model_dir, backend).predict_logits(texts)[0] - logits)))
            for backend, logits in before.items()}


def add_rating_head(model_dir: Path, work: Path, ratings: list[Path] | None = None, sentence_dir: Path | None = None,
                    cap_per_star: int = 1500, fit_only: bool = False) -> dict:
    """The whole command (see the module); ``fit_only`` stops before the model directory is touched.

    The export is refused (and the directory left as it was) when a binary logit of either backend moves
    on the binary validation split: the head must not change what existing clients receive.
    """
    import shutil

    from app.model import SentimentModel
    from training.steps.export import RATING_HEAD_FILE, ExportError, check_tflite_agreement, export_artifacts
    from training.steps.report import write_reports

    entries, sets = fit_rating(model_dir, work, ratings, sentence_dir, cap_per_star)
    if fit_only:
        return _summary(entries)
    metadata, splits, _ = rebuild_splits(model_dir)
    texts = splits.validation.texts
    before = {backend: SentimentModel(model_dir, backend).predict_logits(texts)[0]
              for backend in ("savedmodel", "tflite")}
    kept = {name: model_dir / f"{name}.previous" for name in ("model.tflite", "saved_model")}
    for name, previous in kept.items():
        if previous.exists():
            shutil.rmtree(previous) if previous.is_dir() else previous.unlink()
        (shutil.copytree if (model_dir / name).is_dir() else shutil.copy2)(model_dir / name, previous)
    head_path = model_dir / "pytorch" / RATING_HEAD_FILE
    shutil.copy2(work / HEAD_FILE, head_path)
    try:
        export_artifacts(model_dir / "pytorch", model_dir, texts, int(metadata["max_length"]))
        moved = _binary_difference(before, model_dir, texts)
        if any(value > 0 for value in moved.values()):
            raise ExportError(f"the binary logits moved with the rating head (max difference {moved}): not exporting")
        agreement = check_tflite_agreement(model_dir, texts)
    except BaseException:
        for name, previous in kept.items():
            target = model_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
            previous.replace(target)
        head_path.unlink(missing_ok=True)
        raise
    for previous in kept.values():
        shutil.rmtree(previous) if previous.is_dir() else previous.unlink()
    parity = _star_parity(model_dir, work, texts[:500], entries)
    metadata["rating_head"] = entries["rating_head"]
    metadata["four_way"] = entries["four_way"]
    metadata["export"]["tflite_validation_agreement"] = agreement
    metadata["export"]["rating_head"] = {"binary_logit_difference_on_validation": moved, **parity}
    (model_dir / "model.json").write_text(json.dumps(metadata, indent=2))
    for backend in ("tflite",):
        metadata["four_way"]["metrics_runtime"] = {backend: _runtime_metrics(model_dir, backend, sets)}
    write_reports(metadata, model_dir, None)
    return _summary(entries)
