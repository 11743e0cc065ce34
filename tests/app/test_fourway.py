"""Four-way rules (app.fourway) and a star-head model through the runtime and the handler."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from app import fourway
from app.model import ModelLoadError, SentimentModel

POS, NEG = 1, 0  # the tiny model's label order: NEGATIVE, POSITIVE
ZERO = dict.fromkeys(fourway.SENTIMENTS, 0.0)


def test_mixed_evidence_needs_two_parts_and_both_polarities() -> None:
    assert fourway.mixed_evidence(np.array([[0.01, 0.99]]), POS, NEG) == 0.0
    both = np.array([[0.02, 0.98], [0.9, 0.1]])
    assert fourway.mixed_evidence(both, POS, NEG) == pytest.approx(0.9)
    same = np.array([[0.02, 0.98], [0.3, 0.7]])
    assert fourway.mixed_evidence(same, POS, NEG) == pytest.approx(0.3)


def test_raw_scores_sum_to_one_and_follow_the_binary_head() -> None:
    binary = np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]])
    stars = np.array([[0.1, 0.1, 0.2, 0.3, 0.3], [0.5, 0.3, 0.1, 0.05, 0.05], [0.0, 0.0, 1.0, 0.0, 0.0]])
    raw = fourway.raw_scores(binary, POS, NEG, stars, np.array([0.0, 0.4, 0.0]))
    np.testing.assert_allclose(raw.sum(axis=1), 1.0)
    assert raw[0, 3] == 0.0 and raw[1, 3] == pytest.approx(0.4)
    assert raw[0, 0] / raw[0, 1] == pytest.approx(0.8 / 0.2)  # POSITIVE : NEGATIVE as the binary head says
    assert raw[2, 2] == pytest.approx(1.0)  # all the rating head's mass on 3 stars: NEUTRAL
    assert fourway.sentiment_of(raw) == ["POSITIVE", "NEGATIVE", "NEUTRAL"]


def test_bias_moves_the_decision_and_keeps_the_sum() -> None:
    raw = np.array([[0.5, 0.2, 0.3, 0.0]])
    assert fourway.sentiment_of(fourway.apply_bias(raw, np.zeros(4))) == ["POSITIVE"]
    shifted = fourway.apply_bias(raw, np.array([0.0, 0.0, 1.0, 0.0]))
    assert fourway.sentiment_of(shifted) == ["NEUTRAL"]
    assert shifted.sum() == pytest.approx(1.0)


def test_expected_stars() -> None:
    probabilities = np.array([[0, 0, 0, 0, 1.0], [0.5, 0, 0, 0, 0.5], [0.2] * 5])
    np.testing.assert_allclose(fourway.expected_stars(probabilities), [5.0, 3.0, 3.0])


def test_rule_for_counts_sentences() -> None:
    assert fourway.rule_for(0) == fourway.rule_for(1) == "sentence"
    assert fourway.rule_for(2) == "review"


@pytest.mark.parametrize("entry", [
    None, {"bias": {"sentence": ZERO}}, {"bias": {"sentence": ZERO, "review": {**ZERO, "MIXED": "x"}}},
    {"bias": {"sentence": ZERO, "review": {"POSITIVE": 0.0}}},
    {"bias": {"sentence": ZERO, "review": {**ZERO, "NEUTRAL": float("nan")}}},
])
def test_malformed_rules_are_refused(entry: object) -> None:
    with pytest.raises(fourway.FourWayError, match="four_way"):
        fourway.read_rules(entry)


# --- a star-head model through the runtime -------------------------------------------------------------------------

TEXTS = ["The kettle is wonderful. It broke after a week, though.",
         "The blender is excellent and reliable. I love it and would buy it again.",
         "Awful.", "ok"]


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_binary_fields_do_not_change(tiny_artifacts: Path, tiny_star_artifacts: Path, backend: str) -> None:
    """label, score, scores and truncated are exactly those of the same weights without the head."""
    before = SentimentModel(tiny_artifacts, backend).predict(TEXTS)
    after = SentimentModel(tiny_star_artifacts, backend).predict(TEXTS, sentences=True)
    for old, new in zip(before, after, strict=True):
        assert (new.label, new.score, new.scores, new.truncated) == (old.label, old.score, old.scores, old.truncated)
        assert old.sentiment is None and new.sentiment in fourway.SENTIMENTS


@pytest.mark.parametrize("backend", ["tflite", "savedmodel"])
def test_four_way_fields(tiny_star_artifacts: Path, backend: str) -> None:
    model = SentimentModel(tiny_star_artifacts, backend)
    for p in model.predict(TEXTS):
        assert sum(p.sentiment_scores.values()) == pytest.approx(1.0, abs=1e-5)  # type: ignore[union-attr]
        assert p.sentiment == max(p.sentiment_scores, key=p.sentiment_scores.get)  # type: ignore[arg-type,union-attr]
        assert sum(p.star_scores.values()) == pytest.approx(1.0, abs=1e-5)  # type: ignore[union-attr]
        assert list(p.star_scores) == list(fourway.STAR_LABELS)  # type: ignore[arg-type]
        expected = sum(int(k) * v for k, v in p.star_scores.items())  # type: ignore[union-attr]
        assert p.stars == pytest.approx(expected, abs=1e-3) and 1.0 <= p.stars <= 5.0  # type: ignore[operator]
        assert p.sentences is None
    single = model.predict(TEXTS[2:3])[0]
    assert single.sentiment_scores["MIXED"] == 0.0  # type: ignore[index]  # one part: no MIXED evidence


def test_sentences_on_request(tiny_star_artifacts: Path) -> None:
    model = SentimentModel(tiny_star_artifacts, "tflite")
    text = TEXTS[0]
    result = model.predict([text], sentences=True)[0]
    assert [text[s.start:s.end] for s in result.sentences] == [  # type: ignore[union-attr]
        "The kettle is wonderful.", "It broke after a week, though."]
    alone = model.predict(["The kettle is wonderful."])[0]
    first = result.sentences[0]  # type: ignore[index]
    # A sentence is scored as that text alone would be (same batch of pieces, one model).
    assert (first.label, first.sentiment) == (alone.label, alone.sentiment)
    assert first.score == pytest.approx(alone.score, abs=1e-4)


def test_mixed_comes_from_opposite_clauses(tiny_star_artifacts: Path, tmp_path: Path) -> None:
    """With a MIXED bias large enough, a text whose clauses disagree is MIXED and one without clauses is not."""
    copy = tmp_path / "m"
    shutil.copytree(tiny_star_artifacts, copy)
    metadata = json.loads((copy / "model.json").read_text())
    metadata["four_way"]["bias"]["sentence"]["MIXED"] = 30.0
    (copy / "model.json").write_text(json.dumps(metadata))
    model = SentimentModel(copy, "tflite")
    mixed_text, plain = "The kettle is wonderful, but it broke after a week.", "Awful."
    parts = model.predict(["The kettle is wonderful", "but it broke after a week."])
    result, other = model.predict([mixed_text, plain])
    if {p.label for p in parts} == {"POSITIVE", "NEGATIVE"}:
        assert result.sentiment == "MIXED"
    assert other.sentiment != "MIXED"


def test_four_way_rules_without_a_star_head_stop_start_up(tiny_artifacts: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(tiny_artifacts, copy)
    metadata = json.loads((copy / "model.json").read_text())
    metadata["four_way"] = {"bias": {"sentence": ZERO, "review": ZERO}}
    (copy / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="star_logits"):
        SentimentModel(copy, "tflite")


def test_malformed_four_way_entry_stops_start_up(tiny_star_artifacts: Path, tmp_path: Path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(tiny_star_artifacts, copy)
    metadata = json.loads((copy / "model.json").read_text())
    metadata["four_way"] = {"bias": {"sentence": ZERO}}
    (copy / "model.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match=r"model\.json.*four_way"):
        SentimentModel(copy, "tflite")


# --- through the handler and bulk scoring ----------------------------------------------------------------------------

def test_handler_answers_the_new_fields_and_sentences(tiny_artifacts: Path, tiny_star_artifacts: Path,
                                                      lambda_context, capsys) -> None:  # type: ignore[no-untyped-def]
    import copy

    from tests.app.conftest import call, load_handler
    from tests.conftest import load_event

    event = load_event("predict_sentences")
    text = json.loads(event["body"])["text"]
    plain = copy.deepcopy(event)
    plain["body"] = json.dumps({"texts": [text, "Awful."]})
    with pytest.MonkeyPatch.context() as mp:
        old = load_handler(mp, tiny_artifacts)
        _, before, _ = call(old, plain, lambda_context)
        assert set(before["results"][0]) == {"label", "score", "scores", "truncated"}  # no head: nothing new
        new = load_handler(mp, tiny_star_artifacts)
        capsys.readouterr()
        status, after, _ = call(new, plain, lambda_context)
        assert status == 200
        for old_result, new_result in zip(before["results"], after["results"], strict=True):
            assert {k: new_result[k] for k in old_result} == old_result  # existing fields, same values
            assert set(new_result) == {*old_result, "sentiment", "sentiment_scores", "stars", "star_scores"}
        metrics = capsys.readouterr().out
        assert any(f'"Sentiment{s.title()}"' in metrics for s in fourway.SENTIMENTS)
        status, body, _ = call(new, event, lambda_context)
        assert status == 200
        sentences = body["results"][0]["sentences"]
        assert [text[s["start"]:s["end"]] for s in sentences] == [
            "Five stars for the fast shipping.",
            "The product itself broke after two days, but the seller refunded me quickly."]
        assert all(set(s) == {"start", "end", "label", "score", "sentiment", "sentiment_scores"} for s in sentences)
        bad = copy.deepcopy(event)
        bad["body"] = json.dumps({"text": "fine", "sentences": "yes please"})
        status, body, _ = call(new, bad, lambda_context)
        assert status == 422 and body["error"]["details"][0]["field"] == "sentences"


def test_bulk_records_and_summary_carry_the_four_way_fields(tiny_star_artifacts: Path) -> None:
    import io

    from app.bulk import score_stream

    model = SentimentModel(tiny_star_artifacts, "tflite")
    data = "\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(TEXTS)).encode() + b"\n{\"id\": 9}\n"
    out = io.BytesIO()
    outcome = score_stream([data], "jsonl", model, out.write)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    scored = [r for r in records if "label" in r]
    assert len(scored) == len(TEXTS) and records[-1]["error"]["code"]
    for record, prediction in zip(scored, model.predict(TEXTS), strict=True):
        assert list(record)[:5] == ["id", "label", "score", "scores", "sentiment"]
        assert (record["sentiment"], record["stars"]) == (prediction.sentiment, prediction.stars)
    assert sum(outcome.counts.sentiments.values()) == len(TEXTS)
