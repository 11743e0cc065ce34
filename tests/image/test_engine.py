"""image/engine.sh stop: what it removes from the host, on hosts with all, some or none of the daemon's rules left.

No engine is needed: ``iptables``, ``ip`` and ``docker`` are stand-ins on PATH that print a given rule set
and record every call, so the host's own firewall and bridge are never touched. A stop that fails turns a
green CI run red (.ci/run stops the engine in its EXIT trap), so every case must exit 0.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

ENGINE = ROOT / "image" / "engine.sh"

# What dockerd 20.10 leaves after a run, per table (iptables -S format).
ALL_RULES = {
    "filter": [
        "-P INPUT ACCEPT", "-P FORWARD DROP", "-P OUTPUT ACCEPT",
        "-N DOCKER", "-N DOCKER-ISOLATION-STAGE-1", "-N DOCKER-ISOLATION-STAGE-2", "-N DOCKER-USER",
        "-A INPUT -i lo -j ACCEPT",
        "-A FORWARD -j DOCKER-USER",
        "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
        "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -o docker0 -j DOCKER",
        "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
        "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
        "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
        "-A DOCKER-USER -j RETURN",
    ],
    "nat": [
        "-P PREROUTING ACCEPT", "-P POSTROUTING ACCEPT", "-N DOCKER",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE",
        "-A DOCKER -i docker0 -j RETURN",
    ],
}
# The host's own rules, which a stop must leave alone.
FOREIGN = {"-A INPUT -i lo -j ACCEPT", "-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE"}
# The state the last CI run's stop failed on: the daemon's chains half removed, no jump rule left in nat.
PARTIAL_RULES = {
    "filter": ["-P FORWARD DROP", "-N DOCKER-ISOLATION-STAGE-2", "-N DOCKER-USER",
               "-A FORWARD -j DOCKER-USER", "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP"],
    "nat": ["-P POSTROUTING ACCEPT", "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE"],
}
CHAINS = ("DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2", "DOCKER-USER")


def _stub(path: Path, body: str) -> None:
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def _stop(tmp_path: Path, rules: dict[str, list[str]], *, started: bool = True, before: str | None = None,
          bridge: str | None = None, other_dockerd: bool = False) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run ``engine.sh stop`` with stand-in tools; returns the result and the iptables calls made."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for table, lines in rules.items():
        (tmp_path / f"{table}.rules").write_text("\n".join(lines) + "\n")
    log = tmp_path / "iptables.log"
    _stub(bin_dir / "iptables", f"""echo "$*" >> {shlex.quote(str(log))}
table=filter
[ "$1" = -t ] && {{ table=$2; shift 2; }}
case "$1" in
  -S) cat {shlex.quote(str(tmp_path))}/$table.rules 2>/dev/null ;;
  -X|-F) grep -q -- "^-N $2\\$" {shlex.quote(str(tmp_path))}/$table.rules 2>/dev/null || exit 1 ;;
esac
""")
    _stub(bin_dir / "ip", f'echo "ip $*" >> {shlex.quote(str(tmp_path / "ip.log"))}\n')
    _stub(bin_dir / "docker", "exit 1\n")
    _stub(bin_dir / "sysctl", f'echo "sysctl $*" >> {shlex.quote(str(tmp_path / "sysctl.log"))}\n')
    _stub(bin_dir / "pgrep", "exit 0\n" if other_dockerd else "exit 1\n")
    if before is not None:
        (state / "host-before").write_text(before)
    if started:
        gone = subprocess.Popen(["true"])
        gone.wait()
        (state / "started-by-us").write_text(f"{gone.pid}\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SENTIMENT_ENGINE_STATE": str(state),
           "SENTIMENT_ENGINE_SOCKET": str(tmp_path / "docker.sock")}
    env.pop("SENTIMENT_ENGINE_BRIDGE", None)
    if bridge:
        env["SENTIMENT_ENGINE_BRIDGE"] = bridge
        # what `start` recorded: the rules it added for the bridge
        (state / "iptables-rules").write_text(f"nat POSTROUTING -s 10.213.77.1/24 ! -o {bridge} -j MASQUERADE\n"
                                              f"filter FORWARD -i {bridge} -j ACCEPT\n")
    result = subprocess.run(["bash", str(ENGINE), "stop"], env=env, capture_output=True, text=True, timeout=60)
    calls = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls


def _deleted(calls: list[list[str]]) -> set[tuple[str, str]]:
    return {(call[1], " ".join(call[2:]).replace("-D ", "-A ", 1)) for call in calls if call[2:3] == ["-D"]}


def test_stop_removes_every_rule_and_chain_of_the_daemon_and_nothing_else(tmp_path: Path) -> None:
    result, calls = _stop(tmp_path, ALL_RULES)
    assert result.returncode == 0, result.stderr
    expected = {(table, rule) for table, lines in ALL_RULES.items() for rule in lines
                if rule.split()[1] in {"INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING"}
                and rule.startswith("-A") and rule not in FOREIGN}
    assert _deleted(calls) == expected
    for table in ("filter", "nat"):
        for verb in ("-F", "-X"):
            assert {call[3] for call in calls if call[:3] == ["-t", table, verb]} == set(CHAINS)
        # every chain is flushed before any is deleted, so none is still referenced
        verbs = [call[2] for call in calls if call[:2] == ["-t", table] and call[2] in ("-F", "-X")]
        assert max(i for i, verb in enumerate(verbs) if verb == "-F") < verbs.index("-X")
    assert (tmp_path / "ip.log").read_text() == "ip link delete docker0\n"
    assert not (tmp_path / "state" / "started-by-us").exists()


def test_stop_puts_back_the_forwarding_the_daemon_changed(tmp_path: Path) -> None:
    result, calls = _stop(tmp_path, ALL_RULES, before="ip_forward=0\nforward_policy=ACCEPT\n")
    assert result.returncode == 0, result.stderr
    assert ["-t", "filter", "-P", "FORWARD", "ACCEPT"] in calls
    assert (tmp_path / "sysctl.log").read_text() == "sysctl -qw net.ipv4.ip_forward=0\n"
    assert not (tmp_path / "state" / "host-before").exists()


def test_stop_changes_no_policy_when_nothing_was_recorded(tmp_path: Path) -> None:
    result, calls = _stop(tmp_path, ALL_RULES, before="ip_forward=\nforward_policy=\n")
    assert result.returncode == 0, result.stderr
    assert not [call for call in calls if "-P" in call] and not (tmp_path / "sysctl.log").exists()


@pytest.mark.parametrize("rules", [PARTIAL_RULES, {"filter": ["-P FORWARD ACCEPT"], "nat": []}],
                         ids=["half-removed", "none-left"])
def test_stop_succeeds_when_the_rules_are_partly_or_wholly_gone(tmp_path: Path, rules: dict[str, list[str]]) -> None:
    result, calls = _stop(tmp_path, rules)
    assert result.returncode == 0, result.stderr
    expected = {(table, rule) for table, lines in rules.items() for rule in lines
                if rule.startswith("-A") and rule.split()[1] in {"FORWARD", "POSTROUTING"}}
    assert _deleted(calls) == expected


@pytest.mark.parametrize("other_dockerd", [True, False], ids=["beside-another", "alone"])
def test_a_separate_engine_removes_only_its_own_bridge_and_rules(tmp_path: Path, other_dockerd: bool) -> None:
    """A second engine (SENTIMENT_ENGINE_BRIDGE) leaves docker0, the DOCKER chains and, while another dockerd
    runs, the forwarding alone: they are the other daemon's."""
    result, calls = _stop(tmp_path, ALL_RULES, bridge="sentfresh0", before="ip_forward=0\nforward_policy=ACCEPT\n",
                          other_dockerd=other_dockerd)
    assert result.returncode == 0, result.stderr
    deletes = [["-t", "nat", "-D", "POSTROUTING", "-s", "10.213.77.1/24", "!", "-o", "sentfresh0", "-j", "MASQUERADE"],
               ["-t", "filter", "-D", "FORWARD", "-i", "sentfresh0", "-j", "ACCEPT"]]
    # the host's forwarding as it was before, only where no other dockerd is left to need it
    restores = [] if other_dockerd else [["-t", "filter", "-P", "FORWARD", "ACCEPT"]]
    assert calls == deletes + restores
    assert (tmp_path / "ip.log").read_text() == "ip link delete sentfresh0\n"
    assert (tmp_path / "sysctl.log").exists() is not other_dockerd
    assert not (tmp_path / "state" / "iptables-rules").exists()
    assert not (tmp_path / "state" / "host-before").exists()


def test_stop_leaves_an_engine_it_did_not_start(tmp_path: Path) -> None:
    result, calls = _stop(tmp_path, ALL_RULES, started=False)
    assert result.returncode == 0
    assert "did not start" in result.stderr
    assert calls == [] and not (tmp_path / "ip.log").exists()


def test_ci_keeps_the_tests_exit_status_when_the_stop_fails() -> None:
    trap = next(line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip().startswith("trap "))
    command = trap.strip()[len("trap "):].rsplit(" EXIT", 1)[0].strip("'").replace("bash image/engine.sh stop", "false")
    script = f"set -euo pipefail\ntrap {shlex.quote(command)} EXIT\ntrue\n"
    assert subprocess.run(["bash", "-c", script], capture_output=True).returncode == 0
    failing = script.replace("\ntrue\n", "\nexit 3\n")
    assert subprocess.run(["bash", "-c", failing], capture_output=True).returncode == 3
