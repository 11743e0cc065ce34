"""Every reader on small generated files in its format; auto-detection; bad-data errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SHARED_DATA, write_original_csv
from training.data import DataError, LabelSpec, read_file
from training.data.readers import detect_format


def _amazon_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "marketplace": ["US"] * 5,
        "star_rating": [5, 1, 3, 4, 2],
        "review_headline": ["Great", "Awful!", "Meh", "", "Bad"],
        "review_body": ["Works well.<br />Love it", "Broke.", "Fine I guess", "Good value", ""],
    })


def test_original_csv_default_columns(tmp_path: Path) -> None:
    result = read_file(write_original_csv(tmp_path / "r.csv", n=20), "csv")
    assert len(result.texts) == 20
    assert result.labels.count(1) == 10 and result.labels.count(0) == 10


def test_original_csv_configurable_columns_and_labels(tmp_path: Path) -> None:
    path = tmp_path / "custom.csv"
    path.write_text("body,stars\nlovely thing,pos\nhorrid thing,neg\nunsure,maybe\n")
    result = read_file(path, "csv", LabelSpec("body", "stars", "pos", "neg"))
    assert result.texts == ["lovely thing", "horrid thing"]
    assert result.labels == [1, 0]
    assert result.bad_rows == 1


def test_amazon_reviews_parquet_and_tsv(tmp_path: Path) -> None:
    frame = _amazon_frame()
    frame.to_parquet(tmp_path / "part.parquet")
    frame.to_csv(tmp_path / "reviews.tsv", sep="\t", index=False)
    for path in (tmp_path / "part.parquet", tmp_path / "reviews.tsv"):
        result = read_file(path, "auto")
        assert result.fmt == "amazon-reviews"
        assert result.labels == [1, 0, 1]  # 3 stars dropped as neutral, empty body is a bad row
        assert result.texts[0].startswith("Great. Works well.")
        assert result.texts[1] == "Awful! Broke."
        assert result.titles == ["Great", "Awful!", ""]  # kept apart too, for --title-examples
        assert result.dropped_neutral == 1 and result.bad_rows == 1


def test_blitzer_review_file(tmp_path: Path) -> None:
    path = tmp_path / "negative.review"
    path.write_bytes(
        b"<review>\n<rating>\n1.0\n</rating>\n<title>\nNot good &amp; loud\n</title>\n<review_text>\n"
        b"Caf\xe9 machine leaked.\n</review_text>\n</review>\n"
        b"<review>\n<rating>\n5.0\n</rating>\n<title>\nSuper\n</title>\n<review_text>\nLovely.\n</review_text>\n</review>\n"
    )
    result = read_file(path, "auto")
    assert result.fmt == "blitzer"
    assert result.labels == [0, 1]
    assert "Café machine leaked." in result.texts[0]
    assert result.titles == ["Not good &amp; loud", "Super"]  # cleaned (entities) by load_examples


def test_fasttext_lines(tmp_path: Path) -> None:
    path = tmp_path / "test.ft.txt"
    path.write_text("__label__2 Great lamp: bright and cheap\n__label__1 Junk: broke at once\nno label here\n")
    result = read_file(path, "fasttext")
    assert result.labels == [1, 0]
    assert result.bad_rows == 1
    assert detect_format(path) == "fasttext"


def test_polarity_csv(tmp_path: Path) -> None:
    path = tmp_path / "test.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([["2", "Nice", "Works, really."], ["1", "Bad", "Stopped."]])
    result = read_file(path, "auto")
    assert result.fmt == "polarity-csv"
    assert result.texts == ["Nice. Works, really.", "Bad. Stopped."]
    assert result.labels == [1, 0]
    assert result.titles == ["Nice", "Bad"]


def test_uci_sst2_vader_video(tmp_path: Path) -> None:
    (tmp_path / "uci.txt").write_text("Good case, great value.\t1\nTerrible fit.\t0\n")
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\na charming film \t1\nbleak and dull \t0\n")
    (tmp_path / "snippets.txt").write_text("1_1\t2.5\tlove this player\n1_2\t-0.2\tmeh\n1_3\t-1.7\tworst buy ever\n")
    (tmp_path / "video.csv").write_text('is_positive_sentiment,review_body\n1,"Loved it, ""truly"""\n0,Boring\n')
    expected = {"uci.txt": ("uci", [1, 0]), "dev.tsv": ("sst2", [1, 0]), "snippets.txt": ("vader", [1, 0]),
                "video.csv": ("video-download", [1, 0])}
    for name, (fmt, labels) in expected.items():
        result = read_file(tmp_path / name, "auto")
        assert (result.fmt, result.labels) == (fmt, labels), name
    assert read_file(tmp_path / "snippets.txt", "vader").dropped_neutral == 1


def test_missing_columns_names_file_and_columns(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("review,score\nnice,1\n")
    with pytest.raises(DataError, match=r"wrong\.csv.*cleaned_text.*has columns \['review', 'score'\]"):
        read_file(path, "csv")


def test_file_without_usable_rows_stops(tmp_path: Path) -> None:
    path = tmp_path / "empty_labels.csv"
    path.write_text("cleaned_text,sentiment\nsomething,7\n   ,1\n")
    with pytest.raises(DataError, match=r"empty_labels\.csv: no usable rows.*2 bad rows"):
        read_file(path, "csv")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_file(tmp_path / "absent.csv")
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DataError, match=r"blank\.csv"):
        read_file(tmp_path / "blank.csv", "csv")


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    path = write_original_csv(tmp_path / "r.csv", n=4)
    with pytest.raises(DataError, match=r"unknown format 'xml'"):
        read_file(path, "xml")


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data is not beside this checkout")
def test_every_shared_file_reads_with_auto() -> None:
    from training.data.dataset import expand_paths

    files = expand_paths([SHARED_DATA / "train", SHARED_DATA / "eval"])
    assert len(files) >= 15
    formats = {read_file(path, "auto").fmt for path in files
               if path.suffix != ".parquet" or path.name.startswith("part-00000")}
    assert formats == {"amazon-reviews", "blitzer", "uci", "sst2", "vader", "video-download", "mcauley", "fdu-mtl",
                       "hatn", "cr"}
