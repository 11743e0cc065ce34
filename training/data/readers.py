"""One reader per on-disk format. Each returns texts and 0/1 labels (1 = positive).

Readers never guess silently: a file without the expected columns raises ``DataError`` naming
the file and the columns it does have, and rows that cannot be used are counted, not hidden.
"""

from __future__ import annotations

import csv
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

NEGATIVE, POSITIVE = 0, 1


class DataError(ValueError):
    """A data file cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class LabelSpec:
    """Column names and label values of the original CSV format (configurable)."""

    text_column: str = "cleaned_text"
    label_column: str = "sentiment"
    positive: str = "1"
    negative: str = "2"


@dataclass
class ReadResult:
    """Texts and labels read from one file, with counts of what was dropped and why."""

    path: Path
    fmt: str
    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)  # the review's title or headline per text ("" when none)
    bad_rows: int = 0
    dropped_neutral: int = 0
    source: str = ""  # the data set the file belongs to (its folder under --data), set by load_examples
    category: str = ""  # product category, from the folder and file names (``category_of``)

    def add(self, text: object, label: int | None, title: object = "") -> None:
        if label is None:
            self.dropped_neutral += 1
        elif not isinstance(text, str) or not text.strip():
            self.bad_rows += 1
        else:
            self.texts.append(text)
            self.labels.append(label)
            self.titles.append(title.strip() if isinstance(title, str) else "")


def _require_columns(path: Path, frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; the file has columns {list(map(str, frame.columns))}"
        )


def join_title(title: str, text: str) -> str:
    """``title. text``: the title as the review's first sentence (empty when the text is empty)."""
    title, text = str(title).strip(), str(text).strip()
    if not text:
        return ""
    if not title:
        return text
    return f"{title} {text}" if title[-1] in ".!?" else f"{title}. {text}"


def _label_from_map(value: object, mapping: dict[str, int]) -> int | None | str:
    key = str(value).strip()
    if key.endswith(".0"):
        key = key[:-2]
    return mapping.get(key, "bad")


def _from_frame(result: ReadResult, texts: pd.Series, labels: list[object], mapping: dict[str, int | None],
                titles: list[str] | None = None) -> None:
    for text, value, title in zip(texts.tolist(), labels, titles or [""] * len(labels), strict=True):
        label = _label_from_map(value, mapping)  # type: ignore[arg-type]
        if label == "bad":
            result.bad_rows += 1
        else:
            result.add(text, label, title)  # type: ignore[arg-type]


def read_original_csv(path: Path, spec: LabelSpec) -> ReadResult:
    """The original model's CSV: ``cleaned_text`` and ``sentiment`` (1 = positive, 2 = negative)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require_columns(path, frame, [spec.text_column, spec.label_column])
    result = ReadResult(path, "csv")
    mapping = {spec.positive: POSITIVE, spec.negative: NEGATIVE}
    _from_frame(result, frame[spec.text_column], frame[spec.label_column].tolist(), mapping)
    return result


def _stars_to_label(stars: object) -> int | None | str:
    try:
        value = int(float(stars))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "bad"
    if value in (1, 2):
        return NEGATIVE
    if value in (4, 5):
        return POSITIVE
    if value == 3:
        return None
    return "bad"


def read_amazon_reviews(path: Path) -> ReadResult:
    """Amazon Customer Reviews (parquet or TSV): headline + body; 1-2 stars negative, 4-5 positive."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path, columns=None)
    else:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE,
                            on_bad_lines="skip")
    _require_columns(path, frame, ["star_rating", "review_body"])
    result = ReadResult(path, "amazon-reviews")
    headline = frame["review_headline"].fillna("") if "review_headline" in frame else pd.Series([""] * len(frame))
    body = frame["review_body"].fillna("")
    for head, text, stars in zip(headline.tolist(), body.tolist(), frame["star_rating"].tolist(), strict=True):
        label = _stars_to_label(stars)
        if label == "bad":
            result.bad_rows += 1
            continue
        result.add(join_title(head, text), label, head)  # type: ignore[arg-type]
    return result


_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_FIELD = {name: re.compile(rf"<{name}>(.*?)</{name}>", re.S) for name in ("rating", "title", "review_text")}


def read_text_detect(path: Path) -> str:
    """The file's text: UTF-8 when it decodes as UTF-8, else Windows-1252 / Latin-1.

    The Blitzer copies differ: the original release is Latin-1, later copies were re-encoded to UTF-8.
    Reading UTF-8 as Latin-1 turns every accent into two characters (``CafÃ©``), which then neither
    reads naturally nor de-duplicates against a clean copy of the same review.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def read_blitzer(path: Path) -> ReadResult:
    """Blitzer et al. multi-domain ``.review`` pseudo-XML (UTF-8 or Latin-1); rating 1-2 negative, 4-5 positive.

    ``positive.review`` / ``negative.review`` fall back on the file name where a review has no rating;
    ``unlabeled.review`` and ``*_all.review`` are labelled by their ratings only.
    """
    raw = read_text_detect(path)
    reviews = _REVIEW.findall(raw)
    if not reviews:
        raise DataError(f"{path}: no <review> elements found; expected Blitzer .review pseudo-XML")
    result = ReadResult(path, "blitzer")
    for block in reviews:
        fields = {name: (m.group(1).strip() if (m := rx.search(block)) else "") for name, rx in _FIELD.items()}
        label = _stars_to_label(fields["rating"]) if fields["rating"] else "bad"
        if label == "bad":
            # fall back on the file name (positive.review / negative.review)
            label = {"positive": POSITIVE, "negative": NEGATIVE}.get(path.stem, "bad")
        if label == "bad":
            result.bad_rows += 1
            continue
        result.add(join_title(fields["title"], fields["review_text"]), label, fields["title"])  # type: ignore[arg-type]
    return result


_FASTTEXT = re.compile(r"^__label__(\S+)\s+(.*)$")


def read_fasttext(path: Path) -> ReadResult:
    """Amazon polarity in fastText lines: ``__label__1`` negative, ``__label__2`` positive."""
    result = ReadResult(path, "fasttext")
    mapping = {"1": NEGATIVE, "2": POSITIVE}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            match = _FASTTEXT.match(line.rstrip("\n"))
            label = mapping.get(match.group(1)) if match else None
            if match is None or label is None:
                result.bad_rows += 1
                continue
            result.add(match.group(2), label)
    if not result.texts and result.bad_rows:
        raise DataError(f"{path}: no line starts with __label__1 or __label__2 (fastText format)")
    return result


def read_polarity_csv(path: Path) -> ReadResult:
    """Amazon polarity CSV without header: label (1 negative, 2 positive), title, text."""
    frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    if frame.shape[1] != 3:
        raise DataError(f"{path}: expected 3 columns (label, title, text); the file has {frame.shape[1]}")
    result = ReadResult(path, "polarity-csv")
    texts = pd.Series([join_title(t, x) for t, x in zip(frame[1], frame[2], strict=True)])
    _from_frame(result, texts, frame[0].tolist(), {"1": NEGATIVE, "2": POSITIVE}, frame[1].tolist())
    return result


def read_uci(path: Path) -> ReadResult:
    """UCI Sentiment Labelled Sentences: ``sentence<TAB>label`` (1 positive, 0 negative)."""
    result = ReadResult(path, "uci")
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            text, _, value = line.rstrip("\n").rpartition("\t")
            label = {"1": POSITIVE, "0": NEGATIVE}.get(value.strip())
            if not _ or label is None:
                result.bad_rows += 1
                continue
            result.add(text, label)
    if not result.texts:
        raise DataError(f"{path}: no 'sentence<TAB>0|1' line found (UCI format)")
    return result


def read_sst2(path: Path) -> ReadResult:
    """GLUE SST-2 TSV with header ``sentence<TAB>label``."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)
    _require_columns(path, frame, ["sentence", "label"])
    result = ReadResult(path, "sst2")
    _from_frame(result, frame["sentence"], frame["label"].tolist(), {"1": POSITIVE, "0": NEGATIVE})
    return result


def read_vader(path: Path, threshold: float = 1.0) -> ReadResult:
    """VADER snippets: ``id<TAB>mean score<TAB>text``; score >= +1 positive, <= -1 negative, rest dropped."""
    result = ReadResult(path, "vader")
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t", 2)
            if len(parts) != 3:
                if line.strip():
                    result.bad_rows += 1
                continue
            try:
                score = float(parts[1])
            except ValueError:
                result.bad_rows += 1
                continue
            label = POSITIVE if score >= threshold else NEGATIVE if score <= -threshold else None
            result.add(parts[2], label)
    if not result.texts and result.bad_rows:
        raise DataError(f"{path}: no 'id<TAB>score<TAB>text' line found (VADER format)")
    return result


def read_video_download(path: Path) -> ReadResult:
    """The digital-video-download CSV: ``is_positive_sentiment`` (1/0) and ``review_body``."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    _require_columns(path, frame, ["is_positive_sentiment", "review_body"])
    result = ReadResult(path, "video-download")
    _from_frame(result, frame["review_body"], frame["is_positive_sentiment"].tolist(), {"1": POSITIVE, "0": NEGATIVE})
    return result


_ENTITY = re.compile(r"& ?(#\d+|[a-zA-Z]+) ?;")
_DETOKENIZE = [
    (re.compile(r" (n't|'s|'m|'ve|'re|'ll|'d)\b", re.I), r"\1"),
    (re.compile(r"``|''"), '"'),
    (re.compile(r'" ([^"]*?) "'), r'"\1"'),
    (re.compile(r" ([,.!?;:%)\]])"), r"\1"),
    (re.compile(r"([(\[$]) "), r"\1"),
]


def detokenize(text: str) -> str:
    """Undo the obvious tokenization of the McAuley / FDU-MTL / CR copies.

    ``& quot ;`` -> ``"`` (an HTML entity split into tokens), ``I 've`` -> ``I've``, ``do n't`` -> ``don't``,
    `` , `` -> ``, ``. Lowercasing cannot be undone; the de-duplication key ignores case and punctuation
    anyway, so this is for the model, which otherwise learns that a space before a comma is a feature.
    """
    text = _ENTITY.sub(lambda m: html.unescape(f"&{m.group(1)};"), text)
    for pattern, replacement in _DETOKENIZE:
        text = pattern.sub(replacement, text)
    return text


def _read_lines(path: Path) -> list[str]:
    return [line for line in read_text_detect(path).splitlines() if line.strip()]


def _label_first(line: str, sep: str) -> tuple[str | None, str]:
    value, found, text = line.strip().partition(sep)
    return (text if found else None), value


def _label_last(line: str, sep: str) -> tuple[str | None, str]:
    text, found, value = line.rpartition(sep)
    return (text if found else None), value


def _read_labelled_lines(path: Path, fmt: str, labels: dict[str, int],
                         split: Callable[[str], tuple[str | None, str]]) -> ReadResult:
    """One tokenized, labelled text per line; ``split`` gives (text or None, label value); the text is detokenized."""
    result = ReadResult(path, fmt)
    for line in _read_lines(path):
        text, value = split(line)
        label = labels.get(value.strip())
        if text is None or label is None:
            result.bad_rows += 1
            continue
        result.add(detokenize(text), label)
    return result


def read_fdu_mtl(path: Path) -> ReadResult:
    """FDU-MTL ``<domain>.task.{train,test}``: ``label<TAB>text``, 1 positive / 0 negative, lowercased and tokenized."""
    return _read_labelled_lines(path, "fdu-mtl", {"1": POSITIVE, "0": NEGATIVE}, lambda line: _label_first(line, "\t"))


def read_mcauley(path: Path) -> ReadResult:
    """McAuley categories ``<Category>_{train,dev,test}.tsv``: ``text<TAB>label``, 1 positive / -1 negative, tokenized."""
    return _read_labelled_lines(path, "mcauley", {"1": POSITIVE, "-1": NEGATIVE}, lambda line: _label_last(line, "\t"))


def read_hatn(path: Path) -> ReadResult:
    """HATN raw Blitzer copies ``review_positive`` / ``review_negative``: one review per line (title, then text)."""
    label = {"review_positive": POSITIVE, "review_negative": NEGATIVE}.get(path.name)
    if label is None:
        raise DataError(f"{path}: a HATN file is named review_positive or review_negative (the name is the label)")
    result = ReadResult(path, "hatn")
    for line in _read_lines(path):
        result.add(line.strip(), label)
    return result


def read_cr(path: Path) -> ReadResult:
    """Hu & Liu customer reviews (SentEval CR): ``label sentence``, 1 positive / 0 negative, lowercased and tokenized."""
    return _read_labelled_lines(path, "cr", {"1": POSITIVE, "0": NEGATIVE}, lambda line: _label_first(line, " "))


FORMATS: dict[str, str] = {
    "csv": "original CSV: text and label columns (default cleaned_text, sentiment; 1 positive, 2 negative)",
    "amazon-reviews": "Amazon Customer Reviews, parquet or TSV (star_rating, review_headline, review_body)",
    "blitzer": "Blitzer multi-domain .review pseudo-XML",
    "fasttext": "Amazon polarity fastText lines (__label__1 negative, __label__2 positive)",
    "polarity-csv": "Amazon polarity CSV without header: label, title, text",
    "uci": "UCI sentiment labelled sentences: text<TAB>0|1",
    "sst2": "GLUE SST-2 TSV: sentence<TAB>label",
    "vader": "VADER snippets: id<TAB>score<TAB>text (|score| >= 1 kept)",
    "video-download": "CSV with is_positive_sentiment and review_body",
    "fdu-mtl": "FDU-MTL <domain>.task.train|test: label<TAB>text (1 positive, 0 negative), lowercased, tokenized",
    "mcauley": "McAuley categories <Category>_train|dev|test.tsv: text<TAB>label (1 positive, -1 negative), tokenized",
    "hatn": "HATN review_positive / review_negative: one raw review per line, the file name is the label",
    "cr": "customer reviews (SentEval CR): label sentence (1 positive, 0 negative), lowercased, tokenized",
    "auto": "guess from the file name and its first line",
}


_SNIFF_LINES = 200


def _sniff(path: Path) -> list[str]:
    """The first non-empty lines of a text file (encoding-tolerant), for format detection."""
    lines: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                lines.append(line.rstrip("\n"))
            if len(lines) >= _SNIFF_LINES:
                break
    return lines


def detect_format(path: Path) -> str:
    """Guess a file's format from its name and first lines; a file that fits none stops the run, named."""
    if path.suffix == ".parquet":
        return "amazon-reviews"
    if path.suffix == ".review":
        return "blitzer"
    if path.name in ("review_positive", "review_negative"):
        return "hatn"
    lines = _sniff(path)
    if not lines:
        raise DataError(f"{path}: the file is empty")
    first = lines[0]
    if first.startswith("__label__"):
        return "fasttext"
    header = first.strip().lower()
    if "star_rating" in header:
        return "amazon-reviews"
    if "is_positive_sentiment" in header:
        return "video-download"
    if header.split("\t")[:2] == ["sentence", "label"]:
        return "sst2"
    tabbed = [line.split("\t") for line in lines]
    if all(len(p) == 2 for p in tabbed):
        heads, tails = {p[0].strip() for p in tabbed}, {p[1].strip() for p in tabbed}
        if heads <= {"0", "1"} and not tails <= {"0", "1", "-1"}:
            return "fdu-mtl"
        if tails <= {"1", "-1"} and ("-1" in tails or re.search(r"_(train|dev|test)\.tsv$", path.name)):
            return "mcauley"
        if tails <= {"0", "1"}:
            return "uci"
    if len(tabbed[0]) == 3 and re.fullmatch(r"-?\d+(\.\d+)?", tabbed[0][1].strip()):
        return "vader"
    if all(re.match(r"^[01] \S", line) for line in lines):
        return "cr"
    if re.match(r'^"?[12]"?,', first):
        return "polarity-csv"
    if path.suffix in {".csv"} or (path.suffix in {".txt", ".tsv"} and "," in first):
        return "csv"
    raise DataError(f"{path}: cannot tell its format from its name and first lines; pass --format "
                    f"(one of {sorted(FORMATS)})")


def read_file(path: Path, fmt: str = "auto", spec: LabelSpec | None = None) -> ReadResult:
    """Read one file in ``fmt`` (or the guessed format) into texts and 0/1 labels."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "auto":
        fmt = detect_format(path)
    readers: dict[str, Callable[[Path], ReadResult]] = {
        "csv": lambda p: read_original_csv(p, spec or LabelSpec()),
        "amazon-reviews": read_amazon_reviews,
        "blitzer": read_blitzer,
        "fasttext": read_fasttext,
        "polarity-csv": read_polarity_csv,
        "uci": read_uci,
        "sst2": read_sst2,
        "vader": read_vader,
        "video-download": read_video_download,
        "fdu-mtl": read_fdu_mtl,
        "mcauley": read_mcauley,
        "hatn": read_hatn,
        "cr": read_cr,
    }
    if fmt not in readers:
        raise DataError(f"unknown format {fmt!r}; choose one of {sorted(FORMATS)}")
    try:
        result = readers[fmt](path)
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path}: cannot be parsed as {fmt}: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{path}: the file is empty") from exc
    if not result.texts:
        raise DataError(
            f"{path}: no usable rows as {fmt} ({result.bad_rows} bad rows, "
            f"{result.dropped_neutral} neutral rows dropped)"
        )
    return result


def unescape(text: str) -> str:
    """Decode HTML entities (twice: some sources escape their escapes, e.g. ``&amp;#34;``)."""
    return html.unescape(html.unescape(text))
