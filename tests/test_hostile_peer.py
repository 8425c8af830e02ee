"""Whatever a hostile registrar does, sipdiag ends within its budget with a valid report and a
clean terminal (issue 16). The peer is tests/peers/hostile.py, one mode per misbehaviour.

Each case runs `sipdiag check --only sip --only net.sip-options` twice at once against one
peer: --format json (report, exit code, stderr) and --format text (what a terminal would show).
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jsonschema
import pytest
from clihelp import REPO, CliResult, subprocess_env
from peers.hostile import MODES, HostileSip, applies

from diag.report import schema

BUDGET_S = 4
SLACK_S = 0.5  # the allowance past --timeout
# Interpreter start and imports, not part of sipdiag's budget: ~0.3 s here, with room for a
# loaded CI runner (the JSON and text runs start at the same time).
START_UP_S = 1.0
PASSWORD = "hostile-peer-secret-1618"
TRANSPORTS = ("udp", "tcp", "tls")
# Framing differs between datagrams and streams, never between TCP and TLS once connected: modes
# that only corrupt a field or a challenge run over UDP and TCP.
FRAMING_AGNOSTIC = frozenset(
    {"wrong-callid", "wrong-cseq", "wrong-branch", "challenge-basic", "challenge-algorithm",
     "challenge-auth-int", "challenge-stale"}
)  # fmt: skip
# The peer says nothing, or cuts the connection: a network cause is a fair reading.
SILENT = frozenset({"stall", "reset", "silence"})
CASES = [
    pytest.param(mode, transport, id=f"{mode}-{transport}")
    for mode in MODES
    if mode != "silence"  # stall over UDP is the same
    for transport in TRANSPORTS
    if applies(mode, transport) and not (mode in FRAMING_AGNOSTIC and transport == "tls")
]
# No raw control character but the line break, no C1 CSI, no bidi override.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@dataclass
class Runs:
    json: CliResult
    json_s: float
    text: CliResult
    text_s: float


def _run(args: list[str], env: dict[str, str], into: dict[str, tuple[CliResult, float]]) -> None:
    """One `python -m diag` process, timed; output decoded without newline translation, which
    would turn a CR into a line break and hide it."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "diag", *args],
        capture_output=True,
        timeout=60,
        env=subprocess_env(env),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - t0
    result = CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
    into[args[-1]] = (result, elapsed)


@cache
def runs(mode: str, transport: str, data: Path) -> Runs:
    peer = HostileSip(mode).start()
    args = ["check", "--registrar", peer.uri_for(transport), "--user", "alice"]
    args += ["--only", "sip", "--only", "net.sip-options", "--timeout", str(BUDGET_S)]
    if transport == "tls":  # trust the peer's own certificate, so the mode is what is tested
        args += ["--ca", peer.ca]
    env = {"SIPDIAG_PASSWORD": PASSWORD, "XDG_DATA_HOME": str(data)}
    done: dict[str, tuple[CliResult, float]] = {}
    try:
        workers = [
            threading.Thread(target=_run, args=([*args, "--format", fmt], env, done))
            for fmt in ("json", "text")
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    finally:
        peer.stop()
    return Runs(*done["json"], *done["text"])


@pytest.fixture(scope="module")
def data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-data")


@pytest.mark.parametrize(("mode", "transport"), CASES)
def test_a_hostile_peer_gets_a_valid_report_within_the_budget(
    mode: str, transport: str, data_home: Path
) -> None:
    r = runs(mode, transport, data_home)
    for took in (r.json_s, r.text_s):
        assert took <= BUDGET_S + SLACK_S + START_UP_S, f"took {took:.2f} s"
    for run in (r.json, r.text):
        assert run.code in (0, 1), (run.code, run.err)
        assert "Traceback" not in run.err, run.err
    jsonschema.validate(r.json.json, schema())
    if mode not in SILENT:  # the peer answered: whatever is wrong, it is not the firewall
        network = [c for c in r.json.causes() if c.startswith("network.")]
        assert network in ([], ["network.tls_untrusted"]), network
        assert (network == ["network.tls_untrusted"]) == mode.startswith("bad-cert"), network


@pytest.mark.parametrize(("mode", "transport"), CASES)
def test_a_hostile_peer_puts_no_raw_control_character_on_the_terminal(
    mode: str, transport: str, data_home: Path
) -> None:
    r = runs(mode, transport, data_home)
    for stream in (r.text.out, r.text.err):
        raw = sorted({f"U+{ord(c):04X}" for c in RAW.findall(stream)})
        assert raw == [], raw
