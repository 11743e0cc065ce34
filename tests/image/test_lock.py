"""requirements/lock/: every package the image installs is pinned with hashes, and installable on the real base.

Offline, from what the lock records (<backend>.wheels.json names the PyPI file behind each hash): each
locked package has a CPython 3.12 wheel for manylinux with glibc <= 2.34 on x86_64 (Amazon Linux 2023's
glibc), and on aarch64 too for the TFLite image. Online (skipped cleanly where PyPI cannot be reached):
PyPI still lists those files with those hashes.
"""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from image.lock import LOCKS, index_files, parse_lock
from tests.conftest import ROOT

BACKENDS = ("tflite", "savedmodel")
ARCHES = {"tflite": ("x86_64", "aarch64"), "savedmodel": ("x86_64",)}


def supported(arch: str, glibc_minor: int = 34) -> set[Tag]:
    """Tags CPython 3.12 installs on glibc 2.<minor> for arch: every manylinux from 2.5 up (pip does not
    imply older manylinux tags from a newer --platform, so they are listed one by one)."""
    platforms = [f"manylinux_2_{m}_{arch}" for m in range(glibc_minor, 4, -1)]
    platforms += [f"manylinux2014_{arch}"] + ([f"manylinux2010_{arch}", f"manylinux1_{arch}"] if arch == "x86_64" else [])
    return set(cpython_tags((3, 12), abis=["cp312", "abi3", "none"], platforms=platforms)) | \
        set(compatible_tags((3, 12), interpreter="cp312", platforms=platforms))


def lock_of(backend: str) -> tuple[dict[str, dict], dict[str, dict]]:
    lock, wheels = LOCKS / f"{backend}.txt", LOCKS / f"{backend}.wheels.json"
    assert lock.is_file() and wheels.is_file(), f"{lock} or {wheels} missing: make lock"
    return parse_lock(lock.read_text()), json.loads(wheels.read_text())


def top_level_pins(backend: str) -> dict[str, str]:
    pins = {}
    for name in ("app.txt", f"backend-{backend}.txt"):
        pins |= {k: v["version"] for k, v in parse_lock((ROOT / "requirements" / name).read_text()).items()}
    return pins


@pytest.mark.parametrize("backend", BACKENDS)
def test_lock_pins_every_package_with_hashes(backend: str) -> None:
    locked, wheels = lock_of(backend)
    assert len(locked) > len(top_level_pins(backend)), "transitive dependencies must be locked too"
    for name, entry in locked.items():
        assert entry["hashes"], f"{name} has no hash"
        recorded = {f["sha256"] for f in wheels[name]["files"]}
        assert set(entry["hashes"]) == recorded, f"{name}: lock and wheels.json disagree (make lock)"
        assert wheels[name]["version"] == entry["version"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_lock_follows_the_requirements(backend: str) -> None:
    """The top-level pins are locked at their versions: a requirements change without `make lock` fails here."""
    locked, _ = lock_of(backend)
    for name, version in top_level_pins(backend).items():
        assert name in locked, f"{name} is in requirements/ but not in the {backend} lock (make lock)"
        assert locked[name]["version"] == version, f"{name}: requirements say {version}, the lock {locked[name]}"
    other = {"tflite": "tensorflow-cpu", "savedmodel": "ai-edge-litert"}[backend]
    assert other not in locked and "torch" not in locked and "transformers" not in locked


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_locked_package_has_a_wheel_for_the_real_base(backend: str) -> None:
    _, wheels = lock_of(backend)
    for arch in ARCHES[backend]:
        tags = supported(arch)
        lacking = []
        for name, entry in wheels.items():
            files = [f["filename"] for f in entry["files"] if f["filename"].endswith(".whl")]
            if not any(set(parse_wheel_filename(f)[3]) & tags for f in files):
                lacking.append(f"{name}=={entry['version']}")
        assert not lacking, f"no CPython 3.12 manylinux (glibc <= 2.34) {arch} wheel for {lacking}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_locked_file_admits_python_312(backend: str) -> None:
    """Requires-Python of each locked file, upper bounds included (uv ignores those; pip does not)."""
    _, wheels = lock_of(backend)
    refused = [f["filename"] for entry in wheels.values() for f in entry["files"]
               if f.get("requires_python") and Version("3.12.1") not in SpecifierSet(f["requires_python"])]
    assert not refused, f"these refuse CPython 3.12: {refused}"


def test_the_checker_rejects_too_new_a_glibc() -> None:
    """The tag set is not a blanket yes: a manylinux_2_35 wheel, a cp313 wheel or a musl one do not fit."""
    tags = supported("x86_64")
    for filename in ("x-1.0-cp312-cp312-manylinux_2_35_x86_64.whl", "x-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
                     "x-1.0-cp312-cp312-musllinux_1_2_x86_64.whl", "x-1.0-cp312-cp312-manylinux_2_17_aarch64.whl"):
        assert not set(parse_wheel_filename(filename)[3]) & tags, filename
    for filename in ("x-1.0-py3-none-any.whl", "x-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                     "x-1.0-cp39-abi3-manylinux_2_28_x86_64.whl", "x-1.0-cp312-cp312-manylinux_2_34_x86_64.whl"):
        assert set(parse_wheel_filename(filename)[3]) & tags, filename


def test_pypi_still_lists_the_locked_files() -> None:
    """Online check of a sample (the top-level pins): skipped, saying so, where PyPI cannot be reached."""
    _, wheels = lock_of("tflite")
    try:
        listed = {f["filename"]: f["hashes"].get("sha256") for f in index_files("numpy")}
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        pytest.skip(f"PyPI not reachable ({exc})")
    for name in top_level_pins("tflite"):
        listed = {f["filename"]: f["hashes"].get("sha256") for f in index_files(name)}
        for file in wheels[name]["files"]:
            assert listed.get(file["filename"]) == file["sha256"], f"{file['filename']}: PyPI's sha256 differs"


def test_lock_files_are_generated_not_hand_written() -> None:
    for backend in BACKENDS:
        head = (LOCKS / f"{backend}.txt").read_text().splitlines()[:2]
        assert head[0].startswith("# This file was autogenerated by uv") and "make lock" in head[1]
    assert Path(ROOT / "image" / "lock.py").is_file()
