"""The rating head's data, fitting and export parity (synthetic texts and a tiny random model only)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.synthetic import reviews
from training.data.fourway import TEST_SOURCES, rating_splits, read_ratings, read_sentence_labels, sentence_label
from training.steps.rating import (
    balanced_mae,
    f1_table,
    fit_bias,
    fit_head,
    star_metrics,
    star_weights,
    stars_to_sentiment,
    three_way,
)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


def _rated_texts(n: int, seed: int) -> list[str]:
    texts, _ = reviews(n, seed)
    return texts


@pytest.fixture
def ratings_dir(tmp_path: Path) -> Path:
    root = tmp_path / "ratings"
    texts = _rated_texts(200, 11)
    _jsonl(root / "mcauley2014_musical_instruments" / "reviews_Musical_Instruments_5.json.gz",
           [{"reviewText": t, "overall": float(1 + i % 5), "summary": "Five Stars"} for i, t in enumerate(texts[:150])]
           + [{"reviewText": texts[0], "overall": 5.0}])  # a duplicate
    sample = root / TEST_SOURCES[0]
    sample.mkdir(parents=True)
    (sample / "Books_small.json").write_text("\n".join(json.dumps({"reviewText": t, "overall": 1 + i % 5})
                                                       for i, t in enumerate(texts[150:])) + "\n")
    software = tmp_path / "amazon_us_reviews_digital_software"
    software.mkdir()
    more = _rated_texts(60, 12)
    pd.DataFrame({"review_body": more, "star_rating": [1 + i % 5 for i in range(60)]}).to_parquet(
        software / "part-0.parquet")
    return tmp_path


def test_read_ratings_reads_bodies_stars_and_categories(ratings_dir: Path) -> None:
    rated = read_ratings([ratings_dir / "ratings", ratings_dir / "amazon_us_reviews_digital_software"])
    assert len(rated) == 150 + 50 + 60  # the duplicate is dropped
    assert set(rated.categories) == {"musical_instruments", "books", "digital_software"}
    assert set(rated.stars) == {1, 2, 3, 4, 5}
    assert not any("Five Stars" in t for t in rated.texts)  # titles are not read


def test_rating_split_keeps_out_excluded_texts_and_unseen_categories(ratings_dir: Path) -> None:
    rated = read_ratings([ratings_dir / "ratings", ratings_dir / "amazon_us_reviews_digital_software"])
    inside = rated.texts[3]
    excluded = [f"Headline. {inside}", "unrelated"]  # a review of the binary held-out split, with its title
    split = rating_splits(rated, excluded, cap_per_star=10, held_cap_per_star=4)
    used = split.train.texts + split.validation.texts + split.test.texts + split.unseen.texts
    assert inside not in used
    # (the synthetic reviews share templates: a near-copy of the excluded one may go with it)
    assert set(split.unseen.categories) == {"books"} and 45 <= len(split.unseen) <= 50
    assert "books" not in set(split.train.categories) | set(split.validation.categories)
    for part in (split.train, split.validation, split.test):
        for counts in part.by_category().values():
            assert max(counts.values()) <= (10 if part is split.train else 4)
    assert not set(split.train.texts) & set(split.validation.texts + split.test.texts)
    assert split.report["dropped_binary_heldout_or_eval"] >= 1


def test_excluded_categories_never_train(ratings_dir: Path) -> None:
    rated = read_ratings([ratings_dir / "ratings", ratings_dir / "amazon_us_reviews_digital_software"])
    split = rating_splits(rated, [], excluded_categories=("digital_software", "books"))
    assert not {"digital_software", "books"} & set(split.train.categories + split.validation.categories
                                                   + split.test.categories)
    assert len(split.unseen) == 50  # an excluded category still makes the unseen-category test


@pytest.mark.parametrize(("polarities", "label"), [
    ([], None), (["positive", "neutral"], "POSITIVE"), (["negative"], "NEGATIVE"), (["neutral"], "NEUTRAL"),
    (["positive", "negative"], "MIXED"), (["conflict"], "MIXED"),
])
def test_sentence_label_rule(polarities: list[str], label: str | None) -> None:
    assert sentence_label(polarities) == label


def test_read_sentence_labels(tmp_path: Path) -> None:
    path = tmp_path / "s.xml"
    path.write_text('<sentences><sentence id="1"><text>The soup was hot but the bread was stale.</text><aspectTerms>'
                    '<aspectTerm term="soup" polarity="positive" from="4" to="8"/>'
                    '<aspectTerm term="bread" polarity="negative" from="25" to="30"/></aspectTerms></sentence>'
                    '<sentence id="2"><text>We went on Monday.</text></sentence></sentences>')
    found = read_sentence_labels(path)
    assert found.labels == ["MIXED"] and found.texts == ["The soup was hot but the bread was stale."]


def test_star_metrics_and_weights() -> None:
    stars = np.array([1, 5, 5, 5])
    perfect = np.eye(5)[stars - 1]
    metrics = star_metrics(perfect, stars)
    assert metrics["mae"] == 0.0 and metrics["exact"] == 1.0 and metrics["within_one"] == 1.0
    np.testing.assert_allclose(star_weights(stars), [2.0, 2 / 3, 2 / 3, 2 / 3])
    always_five = np.tile(np.eye(5)[4], (4, 1))
    assert star_metrics(always_five, stars)["mae"] == 1.0  # 4 stars off on one review of four
    assert balanced_mae(always_five, stars) == pytest.approx(2.0)  # half the weight on the 1-star review


def test_fit_head_learns_separable_stars() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (5, 8))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(1, 6, n)
        return centres[y - 1] + rng.normal(0, 0.5, (n, 8)), y

    (x, y), (vx, vy) = draw(400), draw(200)
    head = fit_head(x, y, vx, vy)
    assert head["weight"].shape == (5, 8) and head["bias"].shape == (5,)
    logits = vx @ head["weight"].T + head["bias"]
    assert np.mean(logits.argmax(1) + 1 == vy) > 0.95
    assert head["C"] in [t["C"] for t in head["tried"]]


def test_fit_bias_finds_the_neutral_class() -> None:
    """Raw scores that under-state NEUTRAL: the fitted bias moves it up and recovers the labels."""
    truth = ["POSITIVE", "NEGATIVE", "NEUTRAL", "NEUTRAL"] * 10
    raw = np.array([[0.7, 0.1, 0.2, 0.0], [0.1, 0.7, 0.2, 0.0], [0.45, 0.2, 0.35, 0.0], [0.2, 0.45, 0.35, 0.0]] * 10)
    bias, f1 = fit_bias(raw, truth, ("NEGATIVE", "NEUTRAL", "POSITIVE"), collapse_mixed=True)
    assert bias["NEUTRAL"] > 0 and f1 == 1.0
    assert bias["POSITIVE"] == bias["NEGATIVE"] == 0.0


def test_f1_table_and_readings() -> None:
    table = f1_table(["A", "A", "B"], ["A", "B", "B"], ("A", "B"))
    assert table["A"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert table["macro"]["f1"] == pytest.approx((0.6667 + 0.6667) / 2, abs=1e-4)
    assert stars_to_sentiment([1, 2, 3, 4, 5]) == ["NEGATIVE", "NEGATIVE", "NEUTRAL", "POSITIVE", "POSITIVE"]
    assert three_way(["MIXED", "POSITIVE"]) == ["NEUTRAL", "POSITIVE"]


# --- export parity --------------------------------------------------------------------------------------------------

def test_star_head_export_parity(tiny_artifacts: Path, tiny_star_artifacts: Path) -> None:
    """SavedModel star logits = the head on the PyTorch features; TFLite close to the SavedModel in every
    signature; the binary logits of both artifacts are bit for bit those of the export without the head."""
    from ai_edge_litert.interpreter import Interpreter

    from app.model import SentimentModel
    from training.steps.export import read_rating_head
    from training.steps.rating import FeatureExtractor, star_probabilities

    texts, _ = reviews(24, seed=9)
    metadata = json.loads((tiny_star_artifacts / "model.json").read_text())
    features, logits = FeatureExtractor(tiny_star_artifacts, metadata)(texts)
    weight, bias = read_rating_head(tiny_star_artifacts / "pytorch")  # type: ignore[misc]
    reference = star_probabilities(features, weight, bias)
    saved = SentimentModel(tiny_star_artifacts, "savedmodel")
    lite = SentimentModel(tiny_star_artifacts, "tflite")
    np.testing.assert_allclose(saved.predict_stars(texts), reference, atol=1e-4)
    assert np.abs(lite.predict_stars(texts) - saved.predict_stars(texts)).max() < 0.05
    np.testing.assert_allclose(saved.predict_logits(texts)[0], logits, atol=1e-4)
    for backend in ("savedmodel", "tflite"):
        old = SentimentModel(tiny_artifacts, backend).predict_logits(texts)[0]
        new = SentimentModel(tiny_star_artifacts, backend).predict_logits(texts)[0]
        assert np.array_equal(old, new), backend
    interpreter = Interpreter(model_path=str(tiny_star_artifacts / "model.tflite"))
    for key, signature in interpreter.get_signature_list().items():
        assert "star_logits" in signature["outputs"], key


def _sentence_xml(path: Path, texts_labels: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    terms = {"POSITIVE": ["positive"], "NEGATIVE": ["negative"], "NEUTRAL": ["neutral"],
             "MIXED": ["positive", "negative"]}
    body = "".join(
        f'<sentence id="{i}"><text>{text}</text><aspectTerms>'
        + "".join(f'<aspectTerm term="x" polarity="{p}" from="0" to="1"/>' for p in terms[label])
        + "</aspectTerms></sentence>" for i, (text, label) in enumerate(texts_labels))
    path.write_text(f"<sentences>{body}</sentences>")


def test_rating_command_end_to_end(tiny_training_run: dict, ratings_dir: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m training rating` on the tiny model: head and biases fitted, both artifacts re-exported with
    star_logits, binary logits unmoved, model.json / card / reliability plot written, the runtime answers."""
    import shutil

    from app.model import SentimentModel
    from training.cli import main

    monkeypatch.chdir(tiny_training_run["work"].parent)  # model.json records the data paths of the run
    model = tmp_path / "artifacts"
    shutil.copytree(tiny_training_run["output"], model)
    texts = ["The kettle is wonderful.", "The kettle is awful.", "The kettle is a kettle.",
             "The kettle is wonderful, but the lid is awful."]
    labels = ["POSITIVE", "NEGATIVE", "NEUTRAL", "MIXED"]
    sentences = tmp_path / "sentences"
    for name in ("semeval14_restaurants/Restaurants_Train_v2.xml", "semeval14_restaurants/Restaurants_Test_Gold.xml",
                 "mams_atsa/val.xml"):
        _sentence_xml(sentences / name, list(zip(texts * 3, labels * 3, strict=True)))
    before = SentimentModel(model, "tflite").predict_logits(texts)[0]
    code = main(["rating", "--model", str(model), "--ratings", str(ratings_dir / "ratings"),
                 "--ratings", str(ratings_dir / "amazon_us_reviews_digital_software"), "--sentences", str(sentences),
                 "--work-dir", str(tmp_path / "work"), "--cap-per-star", "20"])
    assert code == 0
    metadata = json.loads((model / "model.json").read_text())
    assert set(metadata["four_way"]["bias"]) == {"sentence", "review"}
    assert metadata["export"]["rating_head"]["binary_logit_difference_on_validation"] == {"savedmodel": 0.0,
                                                                                          "tflite": 0.0}
    assert "unseen_categories" in metadata["four_way"]["metrics_runtime"]["tflite"]
    assert (model / "pytorch" / "rating_head.npz").is_file()
    assert "## Stars and four-way sentiment" in (model / "MODEL_CARD.md").read_text()
    assert (model / "four_way_reliability.png").is_file()
    served = SentimentModel(model, "tflite")
    assert np.array_equal(served.predict_logits(texts)[0], before)
    assert all(p.sentiment in labels and 1 <= p.stars <= 5 for p in served.predict(texts))  # type: ignore[operator]
