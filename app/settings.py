"""Environment configuration with documented defaults (see the README's configuration table)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_REPO_ARTIFACTS = Path(__file__).resolve().parent.parent / "model_artifacts"


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ValueError(f"{name}={value} must be at least {minimum}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise ValueError(f"{name}={raw!r} must be true or false")
    return raw == "true"


@dataclass(frozen=True)
class Settings:
    """Read once at cold start."""

    model_dir: Path
    backend: str
    max_batch_size: int
    max_text_chars: int
    max_body_bytes: int
    num_threads: int | None
    inference_batch_size: int
    input_prefix: str
    results_prefix: str
    work_prefix: str
    bulk_chunk: int
    bulk_time_margin_s: int
    bulk_part_bytes: int
    api_docs: bool = False  # GET /docs answers Swagger UI (make serve: on; deployed: template parameter ApiDocs)
    s3_endpoint_url: str | None = None  # a local S3 for `sam local invoke BatchFunction` (docs/image.md)

    @classmethod
    def from_env(cls) -> Settings:
        threads = _int("MODEL_NUM_THREADS", 0, minimum=0)
        return cls(
            model_dir=Path(os.environ.get("MODEL_DIR") or _REPO_ARTIFACTS),
            backend=os.environ.get("MODEL_BACKEND", "tflite").strip().lower(),
            max_batch_size=_int("MAX_BATCH_SIZE", 64),
            max_text_chars=_int("MAX_TEXT_CHARS", 5000),
            max_body_bytes=_int("MAX_BODY_BYTES", 262_144),
            num_threads=threads or None,
            inference_batch_size=_int("INFERENCE_BATCH_SIZE", 16),
            input_prefix=os.environ.get("INPUT_PREFIX", "incoming/"),
            results_prefix=os.environ.get("RESULTS_PREFIX", "results/"),
            work_prefix=os.environ.get("WORK_PREFIX", "_work/"),
            bulk_chunk=_int("BULK_CHUNK", 256),
            bulk_time_margin_s=_int("BULK_TIME_MARGIN_S", 30, minimum=0),
            bulk_part_bytes=_int("BULK_PART_BYTES", 8 << 20, minimum=5 << 20),
            api_docs=_bool("API_DOCS", False),
            s3_endpoint_url=os.environ.get("S3_ENDPOINT_URL", "").strip() or None,  # empty: the region's S3
        )


settings = Settings.from_env()
