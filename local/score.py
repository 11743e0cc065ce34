"""``python -m local.score INPUT OUTPUT``: bulk-score a JSONL or CSV file on this machine.

The same code as the S3 function (``app.bulk``): one output line per input record, in input order,
a prediction or an error record; a summary next to the output; a progress bar on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def summary_path(output: Path) -> Path:
    name = output.name[: -len(output.suffix)] if output.suffix else output.name
    return output.with_name(f"{name}.summary.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.score", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="JSON Lines or CSV with id and text (by extension)")
    parser.add_argument("output", type=Path, help="results, JSON Lines")
    parser.add_argument("--format", choices=["jsonl", "csv"], default=None, help="override the extension")
    args = parser.parse_args(argv)

    from app.bulk import READ_CHUNK, InputFileError, detect_format, score_stream

    if not args.input.is_file():
        print(f"error: {args.input}: no such file", file=sys.stderr)
        return 2
    if args.output.resolve() == args.input.resolve():
        print("error: OUTPUT must differ from INPUT", file=sys.stderr)
        return 2
    try:
        fmt = args.format or detect_format(args.input.name)
    except InputFileError as exc:
        print(f"error: {exc} (or pass --format)", file=sys.stderr)
        return 2

    from tqdm import tqdm

    from app.model import ModelLoadError, SentimentModel
    from app.settings import settings

    try:
        model = SentimentModel.from_settings(settings)
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = args.input.stat().st_size
    args.output.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with args.input.open("rb") as source, args.output.open("wb") as sink, \
            tqdm(total=size, unit="B", unit_scale=True, desc=f"scoring {args.input.name}", file=sys.stderr) as bar:

        def progress(consumed: int) -> None:
            bar.update(consumed - bar.n)

        try:
            outcome = score_stream(iter(lambda: source.read(READ_CHUNK), b""), fmt, model, sink.write,
                                   chunk_size=settings.bulk_chunk, progress=progress)
        except InputFileError as exc:
            print(f"error: {args.input}: {exc}", file=sys.stderr)
            return 2
    seconds = time.perf_counter() - started
    counts = outcome.counts
    summary = {"status": "done", "input": {"path": str(args.input), "size": size, "format": fmt},
               "results": str(args.output), "model": model.info(), **counts.to_dict()}
    summary_path(args.output).write_text(json.dumps(summary, indent=2) + "\n")
    rate = counts.records / seconds if seconds else 0.0
    print(f"{counts.records} records ({counts.scored} scored, {counts.errors} errors) in {seconds:.1f} s, "
          f"{rate:.0f} records/s -> {args.output} (+ {summary_path(args.output).name})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
