"""Evaluation texts inside training texts: containment on normalised text, not string equality.

The same review reaches the pool through several sources, preprocessed differently, and a short
evaluation sentence (a UCI or VADER snippet) can sit inside a long training review. Equal strings
miss both. Here every text is reduced to its words (lowercase letters and digits, as the
de-duplication key), each evaluation text of at least ``MIN_WORDS`` words is cut into word n-grams, and a
training text is a leak when it holds most of one evaluation text's n-grams (``SHARE``; all of them
is plain containment) or when most of its own n-grams come from one evaluation text (a snippet of an
evaluation review). One Aho-Corasick pass per training text finds every n-gram at once
(``pyahocorasick``), so the check costs seconds on the whole pool.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

NGRAM = 6  # words per n-gram
SHARE = 0.8  # "most of its n-grams": tolerates an edited word near either end (case and punctuation never count)
# Texts shorter than this are compared for equality only (build_splits). Stock phrases of 6-11 words
# ("I would highly recommend this product.", "Do not waste your time or money.") sit in hundreds of
# unrelated reviews of the pool (measured: 448 of a 40,000-review sample held an evaluation text of
# 6-7 words, 13 one of 11+ words); containing one is not a copy of that evaluation review.
MIN_WORDS = 12
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lowercase letters-and-digits words; apostrophes join (``don't`` and ``do n't`` both give ``dont``)."""
    return _WORD.findall(text.lower().replace("'", "").replace("\u2019", ""))


def _grams(tokens: list[str]) -> set[str]:
    if len(tokens) < MIN_WORDS:
        return set()
    return {" " + " ".join(tokens[i:i + NGRAM]) + " " for i in range(len(tokens) - NGRAM + 1)}


@dataclass
class LeakReport:
    """Which training texts were found to overlap which evaluation texts, and how."""

    contains_eval: list[int] = field(default_factory=list)  # training indices holding most of an evaluation text
    inside_eval: list[int] = field(default_factory=list)  # training indices mostly made of one evaluation text
    checked_eval_texts: int = 0

    @property
    def dropped(self) -> set[int]:
        return set(self.contains_eval) | set(self.inside_eval)


def find_leaks(train_texts: list[str], eval_texts: list[str]) -> LeakReport:
    """Indices of training texts that contain (most of) an evaluation text, or are contained in one."""
    import ahocorasick

    automaton = ahocorasick.Automaton()
    owners: dict[str, list[int]] = {}
    sizes: list[int] = []
    for index, text in enumerate(eval_texts):
        grams = _grams(words(text))
        sizes.append(len(grams))
        for gram in grams:
            owners.setdefault(gram, []).append(index)
    report = LeakReport(checked_eval_texts=sum(1 for s in sizes if s))
    if not owners:
        return report
    for gram, ids in owners.items():
        automaton.add_word(gram, ids)
    automaton.make_automaton()
    for index, text in enumerate(train_texts):
        tokens = words(text)
        if len(tokens) < NGRAM:
            continue
        joined = " " + " ".join(tokens) + " "  # spaces around every word: n-grams match whole words only
        hits: Counter[int] = Counter()
        seen: set[int] = set()  # each n-gram owns one list: count a repeated n-gram once
        for _end, ids in automaton.iter(joined):
            if id(ids) not in seen:
                seen.add(id(ids))
                hits.update(ids)
        if not hits:
            continue
        own = len(tokens) - NGRAM + 1
        for eval_index, count in hits.items():
            if count >= math.ceil(SHARE * sizes[eval_index]):
                report.contains_eval.append(index)
                break
            if len(tokens) >= MIN_WORDS and count >= math.ceil(SHARE * own):
                report.inside_eval.append(index)
                break
    logger.info("leak check: %d training texts contain an evaluation text, %d sit inside one (%d evaluation "
                "texts of %d+ words checked)", len(report.contains_eval), len(report.inside_eval),
                report.checked_eval_texts, MIN_WORDS)
    return report
