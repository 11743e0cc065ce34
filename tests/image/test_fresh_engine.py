"""`make sam-invoke` on a fresh machine: an engine with an empty data root, no base image, nothing built.

The engine is a second dockerd beside the session's (image/engine.sh with SENTIMENT_ENGINE_BRIDGE): its own
data root, exec root, socket and pid file in a new directory, its own bridge, and no iptables chains of its
own, so the session's engine (if one runs) is neither used nor touched. It is stopped by its pid and its data
root removed (engine.sh purge) whatever the test's outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.image.conftest import ENGINE, _standin_possible, engine_unavailable

BRIDGE = "sentfresh0"
CIDR = "10.213.77.1/24"


def _host_engine() -> tuple[bool, bool]:
    """Whether the session's engine answers, and whether its docker0 bridge exists."""
    status = subprocess.run(["bash", str(ENGINE), "status"], capture_output=True, timeout=60, check=False)
    return status.returncode == 0, Path("/sys/class/net/docker0").exists()


def _own_rules() -> str:
    """The host's iptables rules that name the fresh engine's bridge."""
    if shutil.which("iptables") is None:
        return ""
    lines = []
    for table in ("filter", "nat"):
        rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True, check=False)
        lines += [line for line in rules.stdout.splitlines() if BRIDGE in line]
    return "\n".join(lines)


@contextlib.contextmanager
def fresh_engine() -> Iterator[dict[str, str]]:
    """A new dockerd with an empty data root: the environment that points image/engine.sh (and so make) at it."""
    # A short directory: containerd's sockets under the exec root must fit a unix socket path (108 bytes).
    state = Path(tempfile.mkdtemp(prefix="sentiment-fresh-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "KEEP_ENGINE")}
    env.update(SENTIMENT_ENGINE_STATE=str(state), SENTIMENT_ENGINE_SOCKET=str(state / "docker.sock"),
               SENTIMENT_ENGINE_BRIDGE=BRIDGE, SENTIMENT_ENGINE_BRIDGE_CIDR=CIDR)
    try:
        started = subprocess.run(["bash", str(ENGINE), "start"], env=env, capture_output=True, text=True,
                                 timeout=600, check=False)
        if started.returncode != 0:
            pytest.skip(f"no fresh engine could be started (image/engine.sh start): {started.stderr[-800:]}")
        # engine.sh started a daemon of its own rather than using one that answered
        assert (state / "started-by-us").is_file(), started.stderr
        assert started.stdout.strip() == f"export DOCKER_HOST=unix://{state}/docker.sock"
        yield env
    finally:
        stop = subprocess.run(["bash", str(ENGINE), "purge"], env=env, capture_output=True, text=True,
                              timeout=300, check=False)
        shutil.rmtree(state, ignore_errors=True)
    assert stop.returncode == 0, stop.stderr


def test_make_sam_invoke_on_a_fresh_engine_builds_the_stand_in() -> None:
    reason = engine_unavailable() or _standin_possible()
    if reason:
        pytest.skip(reason)
    before = _host_engine()
    with fresh_engine() as env:
        socket = env["SENTIMENT_ENGINE_SOCKET"]
        images = subprocess.run(["docker", "-H", f"unix://{socket}", "image", "ls", "-q"], capture_output=True,
                                text=True, timeout=60, check=True)
        assert images.stdout.strip() == "", "the fresh engine's data root is not empty"

        run = subprocess.run(["make", "--no-print-directory", "sam-invoke", "EVENT=predict_batch"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=1800)
        assert run.returncode == 0, run.stderr[-4000:]
        response = json.loads(run.stdout)  # the whole of stdout is the one response
        labels = [r["label"] for r in json.loads(response["body"])["results"]]
        assert response["statusCode"] == 200 and labels[:2] == ["POSITIVE", "NEGATIVE"]
        assert "sam-invoke: BUILT THE STAND-IN BASE" in run.stderr, run.stderr[-4000:]
        assert "base is the stand-in" in run.stderr
        # the daemon used was the fresh one: the base and the functions' images are in its data root now
        images = subprocess.run(["docker", "-H", f"unix://{socket}", "image", "ls", "--format", "{{.Repository}}"],
                                capture_output=True, text=True, timeout=60, check=True).stdout.split()
        assert {"public.ecr.aws/lambda/python", "sentimentfunction"} <= set(images), images
        state = Path(env["SENTIMENT_ENGINE_STATE"])
    # stopped, its data root, bridge and rules gone, the session's engine as it was
    assert not state.exists()
    assert not Path(f"/sys/class/net/{BRIDGE}").exists()
    assert _own_rules() == ""
    assert _host_engine() == before
