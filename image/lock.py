"""make lock: the image's dependencies, transitive ones included, pinned with hashes, one lock per backend.

    python -m image.lock            (the project's virtualenv: uv comes from requirements/dev.txt)

Resolved by ``uv pip compile --generate-hashes`` for the image's interpreter and platform (CPython 3.12,
manylinux 2.34 x86_64: Amazon Linux 2023's glibc), from PyPI itself rather than any local mirror, so the
hashes are PyPI's. Beside each lock, ``<backend>.wheels.json`` records every file those hashes stand for
(PyPI's simple index, as JSON), so tests/image/test_lock.py can check offline that each package has a wheel the real
base can install.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements"
LOCKS = REQUIREMENTS / "lock"
INDEX = "https://pypi.org/simple"
# PEP 691: the simple index as JSON (every file of a project, with its sha256).
SIMPLE_JSON = "https://pypi.org/simple/{name}/"
PYTHON_VERSION = "3.12"
PLATFORM = "x86_64-manylinux_2_34"
BACKENDS = ("tflite", "savedmodel")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s\\;]+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


def uv() -> str:
    path = Path(sys.executable).parent / "uv"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: pip install -r requirements/dev.txt")
    return str(path)


def parse_lock(text: str) -> dict[str, dict]:
    """name -> {"version", "hashes"} from a hash-pinned requirements file."""
    packages: dict[str, dict] = {}
    current = None
    for line in text.splitlines():
        found = PIN.match(line)
        if found:
            current = found.group(1).lower().replace("_", "-").replace(".", "-")
            packages[current] = {"version": found.group(2), "hashes": []}
        if current:  # a pin's hashes follow it on continuation lines
            packages[current]["hashes"] += HASH.findall(line)
    return packages


def compile_lock(backend: str) -> Path:
    out = LOCKS / f"{backend}.txt"
    command = [uv(), "pip", "compile", "--quiet", "--no-config", "--index-url", INDEX, "--python-version", PYTHON_VERSION,
               "--python-platform", PLATFORM, "--generate-hashes", "--custom-compile-command", "make lock",
               "--constraint", "image/lock-constraints.txt",
               "requirements/app.txt", f"requirements/backend-{backend}.txt", "-o", str(out.relative_to(ROOT))]
    subprocess.run(command, cwd=ROOT, check=True)
    return out


def index_files(name: str) -> list[dict]:
    """Every file PyPI lists for a project: filename, hashes, ... (PEP 691 JSON)."""
    request = urllib.request.Request(SIMPLE_JSON.format(name=name),  # noqa: S310 - a fixed https URL
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    # A fixed https URL (PyPI), not user input.
    with urllib.request.urlopen(request, timeout=60) as reply:  # noqa: S310  # nosec B310
        return json.load(reply)["files"]


def record_wheels(lock: Path) -> Path:
    """<backend>.wheels.json: for each locked package, the PyPI files whose sha256 the lock holds."""
    recorded = {}
    for name, entry in sorted(parse_lock(lock.read_text()).items()):
        files = index_files(name)
        wanted = set(entry["hashes"])
        recorded[name] = {"version": entry["version"],
                          "files": sorted(({"filename": f["filename"], "sha256": f["hashes"]["sha256"],
                                            "requires_python": f.get("requires-python")}
                                           for f in files if f["hashes"].get("sha256") in wanted),
                                          key=lambda f: f["filename"])}
        missing = wanted - {f["sha256"] for f in recorded[name]["files"]}
        if missing:
            raise SystemExit(f"{name}=={entry['version']}: PyPI lists no file with sha256 {sorted(missing)}")
    out = lock.with_suffix(".wheels.json")
    out.write_text(json.dumps(recorded, indent=1) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m image.lock", description=__doc__.split("\n\n")[0])
    parser.add_argument("backends", nargs="*", help=f"any of {', '.join(BACKENDS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s) {sorted(unknown)}: choose from {', '.join(BACKENDS)}")
    LOCKS.mkdir(parents=True, exist_ok=True)
    for backend in args.backends or BACKENDS:
        lock = compile_lock(backend)
        record_wheels(lock)
        print(f"{lock.relative_to(ROOT)}: {len(parse_lock(lock.read_text()))} packages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
