"""The rule splitter: sentences and clauses with offsets into the text as given."""

from __future__ import annotations

import pytest

from app.segments import clauses, parts, sentences


def pieces(text: str, spans) -> list[str]:  # type: ignore[no-untyped-def]
    return [text[s.start:s.end] for s in spans]


@pytest.mark.parametrize(("text", "expected"), [
    ("Great screen. Bad battery!", ["Great screen.", "Bad battery!"]),
    ("Is it good? Yes... mostly.", ["Is it good?", "Yes...", "mostly."]),
    ("Bought it from Dr. Brown on Jan. 5 and it works.", ["Bought it from Dr. Brown on Jan. 5 and it works."]),
    ("It costs 3.5 dollars, e.g. cheap. Fine.", ["It costs 3.5 dollars, e.g. cheap.", "Fine."]),
    ("First line\nsecond line", ["First line", "second line"]),
    ('He said "great!" Then it broke.', ['He said "great!"', "Then it broke."]),
    ("no end mark at all", ["no end mark at all"]),
    ("  padded.  ", ["padded."]),
])
def test_sentences(text: str, expected: list[str]) -> None:
    assert pieces(text, sentences(text)) == expected


def test_offsets_index_the_text_as_given() -> None:
    text = "  Caf\u00e9 was nice.\n\nThe d\u00e9cor, however, was dated!  "
    for span in sentences(text) + parts(text):
        assert text[span.start:span.end] == text[span.start:span.end].strip()
        assert 0 <= span.start < span.end <= len(text)
    assert pieces(text, sentences(text)) == ["Caf\u00e9 was nice.", "The d\u00e9cor, however, was dated!"]


def test_blank_text_has_no_sentences() -> None:
    assert sentences("   ") == []
    assert parts(" \n ") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("Great screen, but the battery dies by noon.", ["Great screen", "but the battery dies by noon."]),
    ("Works fine; the manual is useless.", ["Works fine", "the manual is useless."]),
    ("Although it looks nice, it broke in a week.", ["Although it looks nice,", "it broke in a week."]),
    ("Nice; ok.", ["Nice; ok."]),  # a one-word piece is not a clause of its own
    ("I love it, though.", ["I love it, though."]),
    ("Good sound. However the strap broke.", ["Good sound.", "However the strap broke."]),
    ("Sturdy and cheap.", ["Sturdy and cheap."]),
])
def test_parts(text: str, expected: list[str]) -> None:
    assert pieces(text, parts(text)) == expected


def test_clauses_stay_inside_their_sentence() -> None:
    text = "Fast delivery. The case is pretty, but it cracked; sad really."
    second = sentences(text)[1]
    found = clauses(text, second)
    assert all(second.start <= c.start < c.end <= second.end for c in found)
    assert pieces(text, found) == ["The case is pretty", "but it cracked", "sad really."]
