"""The AWS SAM CLI, pinned in .venv-sam/ and run offline, for `make sam-invoke` and `make sam-api`.

    python3 -m image.sam invoke [EVENT] [--function SentimentFunction] [--env-vars FILE]
    python3 -m image.sam api [--port 3000]

Offline means: no telemetry, no AWS credentials (with dummy ones SAM spends seconds on an STS call that
cannot succeed), a metadata.json whose recent ``lastVersionCheck`` skips the weekly update check, and
its own HOME and TMPDIR under .aws-sam/. ``sam build`` runs only when the sources it packs changed.
``sam local invoke`` exits 0 even when the function failed: here the exit status says whether it did.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"
WORK = ROOT / ".aws-sam"
STAMP = WORK / "sources.sha256"
ENGINE = ROOT / "image" / "engine.sh"
BASE_SCRIPT = ROOT / "image" / "base.sh"
BASH = shutil.which("bash") or "/bin/bash"
DOCKER = shutil.which("docker") or "docker"
# What `sam build` packs into the images: a change to any of these needs a rebuild.
SOURCES = ("Dockerfile", ".dockerignore", "template.yaml", "app", "requirements", "model_artifacts")
# Environment names that would let SAM (or boto3 inside it) reach for real AWS credentials.
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE",
               "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")


class SamError(RuntimeError):
    """SAM could not build, or the invocation did not produce a response."""


def environment() -> dict[str, str]:
    """SAM's environment: offline, no credentials, its own HOME and TMPDIR (created here)."""
    home, tmp = WORK / "home", WORK / "tmp"
    (home / ".aws-sam").mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    metadata = home / ".aws-sam" / "metadata.json"
    data = json.loads(metadata.read_text()) if metadata.is_file() else {"installationId": str(uuid.uuid4())}
    data.update(telemetryEnabled=False, lastVersionCheck=time.time())
    metadata.write_text(json.dumps(data))
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIALS}
    env.update(HOME=str(home), TMPDIR=str(tmp), SAM_CLI_TELEMETRY="0", AWS_DEFAULT_REGION="us-east-1",
               AWS_REGION="us-east-1", DOCKER_BUILDKIT="0",
               AWS_CONFIG_FILE=str(home / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"))
    return env


@contextlib.contextmanager
def engine() -> Iterator[None]:
    """An answering container engine for the duration (started, then stopped, only where none answered)."""
    state = Path(os.environ.get("SENTIMENT_ENGINE_STATE", "/var/lib/sentiment-engine"))
    had = (state / "started-by-us").is_file()
    started = subprocess.run([BASH, str(ENGINE), "start"], capture_output=True, text=True, check=False)
    sys.stderr.write(started.stderr)
    if started.returncode != 0:
        raise SamError("no container engine could be had (image/engine.sh start failed)")
    previous = os.environ.get("DOCKER_HOST")
    for line in started.stdout.splitlines():
        if line.startswith("export DOCKER_HOST="):
            os.environ["DOCKER_HOST"] = line.split("=", 1)[1]
    try:
        yield
    finally:
        if not had and (state / "started-by-us").is_file() and not os.environ.get("KEEP_ENGINE"):
            subprocess.run([BASH, str(ENGINE), "stop"], check=False)
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous


def sources_digest() -> str:
    """A digest of the packed sources: content for small files, size and mtime for the model's large ones."""
    digest = hashlib.sha256()
    for name in SOURCES:
        path = ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts:
                continue
            stat = file.stat()
            digest.update(str(file.relative_to(ROOT)).encode())
            if stat.st_size < 1 << 20:
                digest.update(file.read_bytes())
            else:
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _images_present(env: dict[str, str]) -> bool:
    """Both functions' images are in the engine (a purged data root loses them, whatever the stamp says)."""
    for image in ("sentimentfunction", "batchfunction"):
        check = subprocess.run([DOCKER, "image", "inspect", f"{image}:tflite"], env=env, capture_output=True,
                               check=False)
        if check.returncode != 0:
            return False
    return True


def ensure_base(label: str = "sam-invoke") -> None:
    """The Dockerfile's base in the engine: the stand-in built (and said so on stderr) where the real one is
    absent. image/base.sh decides it, as it does for `make image`; nothing of it reaches stdout."""
    run = subprocess.run([BASH, str(BASE_SCRIPT), label], cwd=ROOT, stdout=sys.stderr, stderr=sys.stderr,
                         check=False)
    if run.returncode != 0:
        raise SamError(f"the base image is absent and the stand-in could not be built (image/base.sh exit "
                       f"{run.returncode})")


def ensure_built(force: bool = False, parameters: dict[str, str] | None = None, label: str = "sam-invoke") -> bool:
    """``sam build`` when the sources (or parameter overrides) changed since the last build, or the images are
    gone; the base image first (the stand-in where the real one is absent). True if it built."""
    env = environment()
    digest = sources_digest() + json.dumps(parameters or {}, sort_keys=True)
    built = WORK / "build" / "template.yaml"
    if not force and built.is_file() and STAMP.is_file() and STAMP.read_text() == digest and _images_present(env):
        return False
    ensure_base(label)
    command = [str(SAM), "build"]
    if parameters:
        command += ["--parameter-overrides", " ".join(f"{k}={v}" for k, v in parameters.items())]
    print(f"{label}: sources changed or images absent: sam build ...", file=sys.stderr)
    run = subprocess.run(command, cwd=ROOT, env=env, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if run.returncode != 0:
        raise SamError(f"sam build failed (exit {run.returncode})")
    STAMP.write_text(digest)
    return True


def parse_response(stdout: str) -> dict:
    """The function's response: the last JSON object SAM printed on stdout."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise SamError("sam local invoke printed no response")


def failed(response: dict) -> bool:
    """An unhandled function error, or a 5xx proxy response (as `make invoke` counts it)."""
    if "errorType" in response or "errorMessage" in response:
        return True
    status = response.get("statusCode")
    return isinstance(status, int) and status >= 500


def invoke(event: Path, function: str = "SentimentFunction", env_vars: Path | None = None,
           extra: list[str] | None = None, timeout: float = 600) -> tuple[dict, str]:
    """``sam local invoke`` once on a built tree; (response, stderr)."""
    command = [str(SAM), "local", "invoke", function, "-e", str(event), "--skip-pull-image"]
    if env_vars:
        command += ["--env-vars", str(env_vars)]
    command += extra or []
    run = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=timeout,
                         check=False)
    if run.returncode != 0:
        raise SamError(f"sam local invoke exited {run.returncode}:\n{run.stderr[-3000:]}")
    try:
        return parse_response(run.stdout), run.stderr
    except SamError:
        raise SamError(f"sam local invoke printed no response:\n{run.stderr[-3000:]}") from None


def resolve_event(name: str) -> Path:
    """events/<name>.json, or a path to a JSON file."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = ROOT / "events" / f"{name}.json"
    if not candidate.is_file():
        names = ", ".join(sorted(p.stem for p in (ROOT / "events").glob("*.json")))
        raise SamError(f"no event {name!r}: events/ has {names}")
    return candidate


def _start_api(port: int) -> int:
    env = environment()
    command = [str(SAM), "local", "start-api", "--host", "127.0.0.1", "--port", str(port), "--skip-pull-image",
               "--warm-containers", "EAGER"]
    print(f"sam-api: http://127.0.0.1:{port}/predict and /health (Ctrl-C stops it)", file=sys.stderr)
    process = subprocess.Popen(command, cwd=ROOT, env=env)

    def forward(signum: int, _frame: object) -> None:
        # SAM removes its containers on SIGTERM; SIGINT from a job-controlled shell may not reach it.
        process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m image.sam", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("invoke", help="sam build when needed, then sam local invoke; the response on stdout")
    one.add_argument("event", nargs="?", default="predict_single")
    one.add_argument("--function", default="SentimentFunction")
    one.add_argument("--env-vars", type=Path)
    api = sub.add_parser("api", help="sam local start-api on 127.0.0.1")
    api.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    if not SAM.is_file():
        print(f"{SAM.relative_to(ROOT)} is missing: make .venv-sam/.installed", file=sys.stderr)
        return 2
    if shutil.which("docker") is None:
        print("the docker client is not on PATH", file=sys.stderr)
        return 2
    try:
        with engine():
            ensure_built(label=f"sam-{args.command}")
            if args.command == "api":
                return _start_api(args.port)
            response, _ = invoke(resolve_event(args.event), args.function, args.env_vars)
    except SamError as exc:
        print(f"sam-invoke: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(response))
    return 1 if failed(response) else 0


if __name__ == "__main__":
    sys.exit(main())
