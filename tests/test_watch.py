"""`sipdiag watch` against real peers (issue 18): Kamailio in the platform namespace, baresip
registered behind the NAT router, PulseAudio with a null source, a dummy softphone process, and
nftables dropping the agent's traffic. Every change the test makes must be in the timeline, in
order and at the right time (within an interval and a sample's length); SIGTERM and Ctrl-C
end it with a final line and no binding of ours left; kill -9 leaves a valid timeline."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from clihelp import REPO, cli, subprocess_env
from peers.inbound import AGENT_IP, PASSWORD, InboundBed
from peers.pulse import Pulse

from diag.timeline import read_lines, schema

INTERVAL = 2.0
SLACK = INTERVAL + 3.0  # an event is seen at the next sample; a sample may wait 2 s for SIP
EXTRA_IP = "10.95.0.77"


class Watcher:
    """A `python -m diag watch` process in the agent namespace, writing ``timeline``."""

    def __init__(self, bed: InboundBed, timeline: Path, env: dict[str, str], *extra: str) -> None:
        self.timeline = timeline
        argv = [
            *bed.agent_prefix, sys.executable, "-m", "diag", "watch",
            "--registrar", bed.registrar(), "--user", "alice", "--interval", str(INTERVAL),
            "--timeout", "6", "--out", str(timeline), "--quiet", *extra,
        ]  # fmt: skip
        self.stderr_path = timeline.with_suffix(".stderr")
        self.err = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            argv,
            env=subprocess_env({"SIPDIAG_PASSWORD": PASSWORD, **env}),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.err,
        )

    def lines(self) -> list[dict[str, Any]]:
        return list(read_lines(self.timeline)) if self.timeline.exists() else []

    def samples(self) -> list[dict[str, Any]]:
        return [x for x in self.lines() if x["type"] == "sample"]

    def wait_for(self, what: str, test: Any, timeout: float = 30.0) -> dict[str, Any]:
        """The first sample (or event) that passes ``test``, waiting up to ``timeout`` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.lines():
                if test(line):
                    return line
            if self.proc.poll() is not None:
                pytest.fail(f"the watch exited {self.proc.returncode}: {self.stderr()}")
            time.sleep(0.2)
        pytest.fail(f"no {what} within {timeout} s; stderr: {self.stderr()}", pytrace=False)

    def samples_after(self, when: float, n: int, timeout: float = 30.0) -> None:
        """Wait until ``n`` samples started after wall time ``when`` are in the file."""
        self.wait_for(
            f"{n} samples after the change",
            lambda _: sum(1 for s in self.samples() if _ts(s["t"]) > when) >= n,
            timeout,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.err.close()

    def end(self, sig: int, expected: int) -> list[dict[str, Any]]:
        """Send ``sig``; the exit code must be ``expected`` and the timeline valid, ended."""
        code = self.stop(sig)
        assert code == expected, self.stderr()
        lines = self.lines()
        valid(lines)
        assert lines[-1]["type"] == "end", lines[-1]
        return lines

    def stderr(self) -> str:
        self.err.flush()
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.err.close()


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def events(lines: Sequence[dict[str, Any]]) -> list[tuple[float, str, dict[str, Any]]]:
    return [(_ts(x["t"]), x["event"], x) for x in lines if x["type"] == "event"]


def first_event(
    lines: Sequence[dict[str, Any]],
    name: str,
    after: float,
    test: Any = None,
    limit: bool = True,
) -> dict[str, Any]:
    for t, n, line in events(lines):
        if n == name and t >= after - 0.5 and (test is None or test(line)):
            if limit:
                assert t - after <= SLACK, f"{name} came {t - after:.1f} s after the change"
            return line
    seen = [(round(t - after, 1), n) for t, n, _ in events(lines)]
    pytest.fail(f"no {name} after the change; events (s after it): {seen}", pytrace=False)


def valid(lines: Sequence[dict[str, Any]]) -> None:
    for line in lines:
        jsonschema.validate(line, schema())
    assert [x["seq"] for x in lines] == list(range(len(lines)))


@pytest.fixture
def dummy_phone(tmp_path: Path) -> Iterator[Path]:
    """A copy of `sleep` named like a softphone, a name of its own per test (host.softphone
    looks for it by name); every such process is gone afterwards."""
    exe = tmp_path / f"phone{secrets.token_hex(3)}"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    try:
        yield exe
    finally:
        subprocess.run(["pkill", "-x", exe.name], check=False)


def start_phone(exe: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(exe), "3600"])


def test_a_watch_records_each_change_in_order_and_sigterm_ends_it_cleanly(
    tmp_path: Path, pulse: Pulse, dummy_phone: Path
) -> None:
    phone = start_phone(dummy_phone)
    with InboundBed.start(tmp_path / "bed") as bed:
        timeline = tmp_path / "shift.jsonl"
        env = {**pulse.env, "XDG_DATA_HOME": str(tmp_path / "data")}
        w = Watcher(
            bed, timeline, env, "--softphone-process", dummy_phone.name, "--agent-id", "A-9"
        )
        try:
            w.wait_for(
                "a healthy sample",
                lambda x: (
                    x["type"] == "sample"
                    and x["state"]["registered"] is True
                    and x["state"]["inbound_reachable"] is True
                    and x["state"]["devices_present"] is True
                    and x["state"]["softphone_running"] is True
                ),
            )
            # 1. The agent's traffic dropped for 20 s.
            dropped = time.time()
            bed.agent_firewall('iifname "lo" accept', "drop")
            w.samples_after(dropped + 2, 2, timeout=40)
            time.sleep(max(0.0, dropped + 20 - time.time()))
            bed.agent_firewall()
            restored = time.time()
            w.samples_after(restored + 1, 2)
            # 2. A new address on the agent's interface (netlink notifies it at once).
            readdressed = time.time()
            iface = _agent_iface(bed)
            add = ["ip", "addr", "add", f"{EXTRA_IP}/24", "dev", iface]
            subprocess.run([*bed.agent_prefix, *add], check=True)
            w.samples_after(readdressed, 1)
            # 3. The microphone unplugged, then plugged in again.
            unplugged = time.time()
            assert pulse.pactl("unload-module", "module-null-source").returncode == 0
            w.samples_after(unplugged + 0.5, 2)
            plugged = time.time()
            load = pulse.pactl("load-module", "module-null-source", "source_name=vmic")
            assert load.returncode == 0, load.stderr
            w.samples_after(plugged + 0.5, 2)
            # 4. The softphone closed, then started again.
            phone.kill()
            phone.wait()
            closed = time.time()
            w.samples_after(closed + 0.5, 2)
            phone = start_phone(dummy_phone)
            reopened = time.time()
            w.samples_after(reopened + 0.5, 2)
            lines = w.end(signal.SIGTERM, 0)
        finally:
            w.kill()
        assert lines[0]["type"] == "start" and lines[0]["agent"]["id"] == "A-9"
        assert lines[-1]["type"] == "end" and lines[-1]["reason"] == "terminated"
        assert lines[-1]["samples"] == len([x for x in lines if x["type"] == "sample"])

        lost = first_event(lines, "registration_lost", dropped)
        back = first_event(lines, "registration_recovered", restored)
        assert _ts(lost["t"]) < restored < _ts(back["t"])
        first_event(lines, "inbound_lost", dropped)
        first_event(lines, "inbound_recovered", restored)
        moved = first_event(
            lines, "address_changed", readdressed, lambda x: EXTRA_IP in json.dumps(x["evidence"])
        )
        assert moved["detected_by"] == "notification", moved
        gone = first_event(lines, "audio_device_removed", unplugged)
        assert "vmic" in json.dumps(gone["evidence"])
        first_event(lines, "audio_device_added", plugged)
        first_event(lines, "softphone_stopped", closed)
        first_event(lines, "softphone_started", reopened)
        order = [n for _, n, _ in events(lines)]
        assert order.index("registration_lost") < order.index("registration_recovered")
        assert order.index("registration_recovered") < order.index("audio_device_removed")
        assert order.index("audio_device_removed") < order.index("audio_device_added")
        assert order.index("audio_device_added") < order.index("softphone_stopped")
        assert order.index("softphone_stopped") < order.index("softphone_started")
        paired_with_the_events(lines, tmp_path)
        # The softphone's registration was only ever queried: baresip's binding is still there.
        assert [b for b in bed.bindings() if "sipdiag=" not in b["Address"]], bed.bindings()
        assert not [b for b in bed.bindings() if "sipdiag=" in b["Address"]]
    phone.kill()


def paired_with_the_events(lines: list[dict[str, Any]], tmp_path: Path) -> None:
    """`sipdiag match` on a central-log export whose 403 rows fall while registration was
    lost and while the microphone was unplugged pairs each with that event."""

    def between(start: str, stop: str) -> dt.datetime:
        a = _ts(first_event(lines, start, 0.0, None, limit=False)["t"])
        b = _ts(first_event(lines, stop, a, None, limit=False)["t"])
        return dt.datetime.fromtimestamp((a + b) / 2, dt.timezone.utc)

    rows = {
        "c-reg": between("registration_lost", "registration_recovered"),
        "c-mic": between("audio_device_removed", "audio_device_added"),
    }
    log = tmp_path / "central.csv"
    log.write_text(
        "Date/Time;Agent;Status;Call ID\n"
        + "".join(
            f"{t.strftime('%d/%m/%Y %H:%M:%S')};A-9;Failure (Rejected – SIP 403 Forbidden);{c}\n"
            for c, t in rows.items()
        ),
        encoding="utf-8",
    )
    timeline = tmp_path / "shift.jsonl"
    r = cli("match", "--log", str(log), str(timeline), "--format", "json")
    assert r.code == 0, r.err
    got = {row["call_id"]: row for row in r.json["rows"]}
    reg, mic = got["c-reg"]["timeline"], got["c-mic"]["timeline"]
    assert reg["likely_cause"] == "sip.not_registered", reg
    assert reg["before"]["state"]["registered"] is False
    assert mic["likely_cause"] == "audio.no_input_device", mic
    assert "audio_device_removed" in [e["event"] for e in mic["events"]] or (
        mic["before"]["state"]["devices_present"] is False
    )
    assert "removed" in mic["explanation"]


def _agent_iface(bed: InboundBed) -> str:
    out = subprocess.run(
        [*bed.agent_prefix, "ip", "-o", "-4", "addr", "show"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        if f" {AGENT_IP}/" in line:
            return line.split()[1]
    raise AssertionError(f"no interface with {AGENT_IP}: {out}")


def test_without_a_softphone_the_watch_keeps_its_own_binding_and_sigterm_removes_it(
    tmp_path: Path,
) -> None:
    with InboundBed.start(tmp_path / "bed", softphones=0) as bed:
        timeline = tmp_path / "own.jsonl"
        w = Watcher(bed, timeline, {"XDG_DATA_HOME": str(tmp_path / "data")}, "--skip", "audio")
        try:
            w.wait_for(
                "a sample where the platform's OPTIONS reached our binding",
                lambda x: x["type"] == "sample" and x["state"]["inbound_reachable"] is True,
            )
            ours = own_bindings(bed)
            assert len(ours) == 1, bed.bindings()
            # A real offer reaching our binding is declined at once, as if nobody were there,
            # instead of ringing into the void until the platform's timer.
            offer = bed.ask("INVITE")
            assert offer.code == 480, offer.codes
            # No refresh is due yet (granted 120 s): the same REGISTER (CSeq) holds it.
            w.samples_after(time.time(), 3)
            assert own_bindings(bed) == ours
            lines = w.end(signal.SIGTERM, 0)
        finally:
            w.kill()
        assert lines[-1]["reason"] == "terminated"
        assert lines[-1]["binding_removed"] is True
        assert bed.bindings() == []  # nothing left behind on the registrar
        samples = [x for x in lines if x["type"] == "sample"]
        assert all(s["state"]["registered"] is False for s in samples)  # no softphone is
        assert samples[-1]["own_binding"]["registered"] is True


def own_bindings(bed: InboundBed) -> list[tuple[str, str, str]]:
    return [
        (b["Address"], b["Call-ID"], b["CSeq"])
        for b in bed.bindings()
        if "sipdiag=" in b["Address"]
    ]


def test_ctrl_c_ends_the_watch_with_130_and_a_final_line(tmp_path: Path) -> None:
    with InboundBed.start(tmp_path / "bed", softphones=0) as bed:
        timeline = tmp_path / "int.jsonl"
        w = Watcher(bed, timeline, {"XDG_DATA_HOME": str(tmp_path / "data")}, "--skip", "audio")
        try:
            w.wait_for(
                "our binding registered",
                lambda x: x["type"] == "sample" and (x.get("own_binding") or {}).get("registered"),
            )
            lines = w.end(signal.SIGINT, 130)
        finally:
            w.kill()
        assert lines[-1]["type"] == "end" and lines[-1]["reason"] == "interrupted"
        assert bed.bindings() == []


def test_kill_9_leaves_a_timeline_valid_up_to_its_last_complete_line(tmp_path: Path) -> None:
    with InboundBed.start(tmp_path / "bed") as bed:
        timeline = tmp_path / "killed.jsonl"
        w = Watcher(bed, timeline, {"XDG_DATA_HOME": str(tmp_path / "data")}, "--skip", "audio")
        try:
            w.wait_for("three samples", lambda _: len(w.samples()) >= 3)
            os.kill(w.proc.pid, signal.SIGKILL)
            w.proc.wait(10)
        finally:
            w.kill()
        # As a kill in the middle of a write leaves it: half a line at the end.
        with timeline.open("ab") as f:
            f.write(b'{"v":1,"type":"sample","watch_id":"x","seq":99,"t":"2026-')
        lines = list(read_lines(timeline))
        assert len(lines) >= 4 and lines[0]["type"] == "start"
        assert lines[-1]["type"] in ("sample", "event")  # no end line: it was killed
        valid(lines)
        report = subprocess.run(
            [sys.executable, "-m", "diag", "report", str(timeline), "--format", "json"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=subprocess_env({}),
            timeout=60,
        )
        assert report.returncode == 0, report.stderr
