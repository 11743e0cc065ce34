"""Sentences and clauses of a review, with character offsets: a small rule splitter, no downloads.

Sentences end at ``.``, ``!``, ``?`` or ``…`` (runs of them, and closing quotes or brackets after them)
followed by white space, and at line breaks. A full stop does not end a sentence after a common
abbreviation (``e.g.``, ``Mr.``, ``approx.``), after a single letter (``U.S.``, ``J. Smith``), inside a
number (``3.5``) or when the next word starts in lower case (``... vs. the old one``).

Clauses: a sentence is cut before a contrasting conjunction (``but``, ``however``, ``although``,
``though``, ``except``, ``yet``, ``whereas``, ``while``, ``on the other hand``) and at ``;``. They are
what the MIXED rule compares: "Great screen, but the battery dies by noon." holds a clearly positive
and a clearly negative clause. A piece with fewer than two words is not a clause of its own (it
stays with its neighbour): "But." is not a verdict.

Offsets are Python string indices into the text as given (``text[start:end]`` is the piece, with its
surrounding white space stripped).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc eg ie approx appt apt dept est fig inc ltd co corp no nos vol vols "
    "jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun ca cf al oz lb lbs ft "
    "in min max mins hrs sec secs pt pts qty".split())
# A sentence end: terminal punctuation, optional closing quotes/brackets, then white space (or the end).
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s|$)")
_LINE_BREAK = re.compile(r"\s*\n\s*")
_CLAUSE_CUT = re.compile(
    r";|\s*(?:,\s*)?\b(?=(?:but|however|although|though|except|yet|whereas|while|"
    r"on the other hand|unfortunately|sadly)\b)", re.IGNORECASE)
# "Although it looks nice, it broke.": a sentence opening with a concession is cut at its first comma.
_OPENING_CONCESSION = re.compile(r"(?:although|though|while|whereas|even though|despite)\b[^,;]*,", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+")
MIN_CLAUSE_WORDS = 2


@dataclass(frozen=True)
class Span:
    """A piece of a text: ``text[start:end]``."""

    start: int
    end: int


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return Span(start, end) if end > start else None


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    """Whether the punctuation ``match`` really ends a sentence."""
    marks = match.group(0)
    if not marks.startswith(".") or len(marks.rstrip("\"'\u201d\u2019)]")) > 1:
        return True  # ! ? … and runs such as "..." or "?!" always end one
    before = text[: match.start()]
    word = re.search(r"([^\W_]+)$", before)
    following = text[match.end():].lstrip()
    if word is None:
        return True
    token = word.group(1)
    if len(token) == 1 and token.isalpha():
        return False  # U.S. / J. Smith / e.g. (its last letter)
    if token.lower() in ABBREVIATIONS and (not following or not following[0].isupper() or token.lower() in
                                           {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "eg", "ie", "cf"}):
        return False
    if following and following[0].islower():
        return False  # "... approx. the size of" / a sentence does not start in lower case
    return True


def sentences(text: str) -> list[Span]:
    """The sentences of ``text``, in order; a text without an end mark is one sentence."""
    spans: list[Span] = []
    cuts = [0]
    for match in _END.finditer(text):
        if _is_boundary(text, match):
            cuts.append(match.end())
    for match in _LINE_BREAK.finditer(text):
        if "\n" in match.group(0):
            cuts.append(match.start())
    cuts.append(len(text))
    cuts = sorted(set(cuts))
    for start, end in itertools.pairwise(cuts):
        span = _strip(text, start, end)
        if span is not None and _WORD.search(text[span.start:span.end]):
            spans.append(span)
        elif span is not None and spans:  # stray punctuation joins the sentence before it
            spans[-1] = Span(spans[-1].start, span.end)
    return spans or ([_strip(text, 0, len(text))] if text.strip() else [])  # type: ignore[list-item]


def clauses(text: str, sentence: Span) -> list[Span]:
    """The clauses of one sentence of ``text`` (the sentence itself when it has no contrast in it)."""
    pieces: list[Span] = []
    start = sentence.start
    body = text[sentence.start:sentence.end]
    cuts = []
    opening = _OPENING_CONCESSION.match(body)
    if opening:
        cuts.append((opening.end(), opening.end()))
    cuts += [(m.start(), m.end()) for m in _CLAUSE_CUT.finditer(body)]
    for cut_start, cut_end in sorted(cuts):
        cut = sentence.start + cut_start
        if cut <= start:
            continue
        span = _strip(text, start, cut)
        if span is not None:
            pieces.append(span)
        start = sentence.start + cut_end
    tail = _strip(text, start, sentence.end)
    if tail is not None:
        pieces.append(tail)
    merged: list[Span] = []
    for piece in pieces:
        if len(_WORD.findall(text[piece.start:piece.end])) < MIN_CLAUSE_WORDS:
            if merged:
                merged[-1] = Span(merged[-1].start, piece.end)
                continue
        merged.append(piece)
    if len(merged) > 1 and len(_WORD.findall(text[merged[0].start:merged[0].end])) < MIN_CLAUSE_WORDS:
        merged[1] = Span(merged[0].start, merged[1].end)
        merged.pop(0)
    return merged or [sentence]


def parts(text: str) -> list[Span]:
    """Every clause of every sentence of ``text``: the pieces the MIXED rule compares."""
    return [clause for sentence in sentences(text) for clause in clauses(text, sentence)]
