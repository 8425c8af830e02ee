"""`sipdiag watch`'s command line: its flags, the usage errors (exit 64, one line), what it
refuses to repeat every interval, and a short real watch of the host checks."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli, cli_process

from diag.errors import UsageError
from diag.timeline import read_lines
from diag.watch import parse_until


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--interval", "0.1"), "--interval 0.1 is out of range"),
        (("--duration", "1h", "--until", "18:00"), "--duration and --until both given"),
        (("--duration", "soon"), "invalid --duration 'soon'"),
        (("--until", "2001-01-01T00:00:00Z"), "is in the past"),
        (("--until", "teatime"), "invalid --until 'teatime'"),
        (("--inbound-call",), "No such option: --inbound-call"),
        (("--format", "json"), "No such option: --format"),
        (("--idle", "30"), "No such option: --idle"),
    ],
)
def test_usage_errors_are_one_line_and_exit_64(
    args: tuple[str, ...], said: str, tmp_path: Path
) -> None:
    r = cli("watch", "--out", str(tmp_path / "t.jsonl"), *args)
    assert r.code == 64, (r.out, r.err)
    assert said in r.err and r.err.count("\n") == 1, r.err
    assert not (tmp_path / "t.jsonl").exists()  # nothing started


@pytest.mark.parametrize(
    ("line", "said"),
    [
        # 30 s of idle is more than the default --timeout 10: that cross-check is moot here.
        ("idle = [30]", "--idle waits minutes per run; run it with `sipdiag check`"),
        ("idle = [30, 90]\ntimeout = 200", "--idle waits minutes per run"),
        ("idle = [999999]", "--idle waits minutes per run"),  # out of range: moot here too
        ("play_tone = true", "--play-tone plays a sound; run it with `sipdiag check`"),
    ],
)  # --inbound-call and --dial-test are no profile keys: the command line refuses them (above)
def test_a_profile_asking_for_a_call_or_idle_periods_is_refused_for_that_reason_first(
    line: str, said: str, tmp_path: Path
) -> None:
    profile = tmp_path / "p.toml"
    profile.write_text(f'registrar = "127.0.0.1"\nuser = "alice"\n{line}\n')
    r = cli("watch", "--profile", str(profile), "--out", str(tmp_path / "t.jsonl"))
    assert r.code == 64, r.err
    assert r.err.startswith(f"sipdiag: error: {said}"), r.err  # the first error is the reason
    assert "(hint: remove it from the profile or the command line)" in r.err, r.err
    assert not (tmp_path / "t.jsonl").exists()


def test_out_naming_a_directory_is_refused(tmp_path: Path) -> None:
    r = cli("watch", "--out", str(tmp_path))
    assert r.code == 64 and "is a directory" in r.err


@pytest.mark.parametrize(
    ("out", "said"),
    [
        ("fifo", "is not a regular file"),  # opening it would wait for a reader forever
        ("/dev/null", "is not a regular file"),  # the lines would be lost
        ("loopA", "Too many levels of symbolic links"),
        ("loopA/t.jsonl", "Too many levels of symbolic links"),
        ("~no-such-user-sipdiag/t.jsonl", "cannot expand ~ in --out"),
    ],
)
def test_out_that_cannot_hold_a_timeline_is_one_line_and_exit_64_before_anything_starts(
    out: str, said: str, tmp_path: Path
) -> None:
    import os

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loopA").symlink_to("loopB")
    (tmp_path / "loopB").symlink_to("loopA")
    given = out if out.startswith(("/", "~")) else str(tmp_path / out)
    # A real process with a deadline: the FIFO used to block in open() for good.
    r = cli_process("watch", "--only", "host.vpn", "--duration", "1", "--out", given, timeout=30)
    assert r.code == 64, (r.out, r.err)
    assert r.err.startswith("sipdiag: error: ") and said in r.err, r.err
    assert r.err.count("\n") == 1 and "internal error" not in r.err, r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "loopA", "loopB"]


def test_a_short_watch_of_the_host_ends_by_its_duration_with_a_valid_timeline(
    tmp_path: Path,
) -> None:
    out = tmp_path / "t.jsonl"
    environ = {"XDG_DATA_HOME": str(tmp_path / "data")}
    r = cli(
        "watch", "--only", "host.interfaces", "--only", "host.vpn", "--interval", "0.3",
        "--duration", "1", "--out", str(out), environ=environ,
    )  # fmt: skip
    assert r.code == 0, r.err
    lines = list(read_lines(out))
    kinds = [x["type"] for x in lines]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert lines[-1]["reason"] == "duration"
    samples = [x for x in lines if x["type"] == "sample"]
    assert 3 <= len(samples) <= 5 and lines[-1]["samples"] == len(samples)
    assert set(samples[0]["checks"]) == {"host.interfaces", "host.vpn"}
    assert lines[0]["settings"]["checks"] == ["host.interfaces", "host.vpn"]
    assert [s["mono"] for s in samples] == sorted(s["mono"] for s in samples)
    assert "timeline" in r.err  # where it goes, said once


def test_until_reads_local_clock_times_and_rfc_3339() -> None:
    now = dt.datetime(2026, 12, 2, 17, 0, tzinfo=dt.timezone.utc)
    assert parse_until("18:30", now) == now.replace(hour=18, minute=30)
    assert parse_until("16:00", now) == now.replace(hour=16) + dt.timedelta(days=1)
    assert parse_until("2026-12-03T08:00:00Z", now).isoformat() == "2026-12-03T08:00:00+00:00"
    with pytest.raises(UsageError):
        parse_until("half past", now)


def test_a_sleep_between_two_samples_is_a_sleep_resume_event(tmp_path: Path) -> None:
    """A machine cannot be put to sleep here: the watch's clocks are injected (an OS
    boundary). Asleep, the wall clock runs on while the monotonic clock stops; the third sample
    sees 10 minutes of wall time in 0.3 s of monotonic time."""
    import time

    from clihelp import registered

    from diag.environment import Environment
    from diag.timeline import TimelineWriter
    from diag.watch import Watch, light_checks, plan_watch, watch_settings

    reads = {"wall": 0}

    def wall() -> float:
        reads["wall"] += 1
        return time.time() + (600.0 if reads["wall"] >= 3 else 0.0)

    env = Environment(environ={"XDG_DATA_HOME": str(tmp_path / "data")}, stdin_isatty=False)
    env.registry = registered("host.interfaces")
    settings = watch_settings(None, {"only": ("host.interfaces",)})
    plan = plan_watch(0.3, "1", None, str(tmp_path / "t.jsonl"))
    writer = TimelineWriter(plan.out, "w-sleep")
    checks = light_checks(env.checks(), settings, capture=False)
    code = Watch(env, settings, checks, plan, writer, "w-sleep", (wall, time.monotonic)).run()
    assert code == 0
    lines = list(read_lines(plan.out))
    slept = [x for x in lines if x["type"] == "event" and x["event"] == "sleep_resume"]
    assert len(slept) == 1, [x.get("event") for x in lines]
    assert 599 <= slept[0]["evidence"]["slept_s"] <= 600.5
    assert slept[0]["detected_by"] == "sample"
    samples = [x for x in lines if x["type"] == "sample"]
    assert slept[0]["seq"] == samples[2]["seq"] - 1  # written just before the third sample


# Runs the rest of its command line with files capped at 4 KiB: past that a write fails (EFBIG)
# as on a full disk (Python ignores SIGXFSZ). /dev/full can no longer stand in: --out refuses it.
SMALL_DISK = (
    sys.executable,
    "-c",
    "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
    "os.execv(sys.argv[1], sys.argv[1:])",
)


def test_a_timeline_that_cannot_be_written_is_one_line_and_exit_70(tmp_path: Path) -> None:
    out = tmp_path / "t.jsonl"
    r = cli_process(
        "watch", "--only", "host.vpn", "--interval", "0.3", "--duration", "3", "--out", str(out),
        env={"XDG_DATA_HOME": str(tmp_path / "data")}, prefix=SMALL_DISK,
    )  # fmt: skip
    assert r.code == 70, (r.out, r.err)
    assert f"sipdiag: error: cannot write the timeline {out}: File too large" in r.err
    assert r.err.count("sipdiag: error:") == 1 and "Traceback" not in r.err
    kinds = [x["type"] for x in read_lines(out)]  # the lines written before it are whole
    assert kinds[0] == "start" and "sample" in kinds and out.stat().st_size <= 4096


def test_a_storm_of_network_notifications_does_not_become_a_storm_of_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flapping link or a VPN client rewriting routes notifies all the time (faked here:
    the OS cannot be made to do it on cue): samples still come no closer than the gap."""
    import time

    from clihelp import registered

    import diag.watch as watch
    from diag.environment import Environment
    from diag.timeline import TimelineWriter

    class Storm:
        def wait(self, timeout: float, stop: object) -> list[str]:
            time.sleep(min(timeout, 0.01))
            return ["newroute tun0"]

        def close(self) -> None:
            pass

    monkeypatch.setattr(watch, "_open_notifier", Storm)
    env = Environment(environ={"XDG_DATA_HOME": str(tmp_path / "data")}, stdin_isatty=False)
    env.registry = registered("host.vpn")
    settings = watch.watch_settings(None, {"only": ("host.vpn",)})
    plan = watch.plan_watch(30, "2", None, str(tmp_path / "t.jsonl"))
    checks = watch.light_checks(env.checks(), settings, capture=False)
    w = watch.Watch(env, settings, checks, plan, TimelineWriter(plan.out, "w"), "w")
    w.notified_gap = 0.5
    assert w.run() == 0
    samples = [x for x in read_lines(plan.out) if x["type"] == "sample"]
    assert 4 <= len(samples) <= 5, len(samples)  # at 0, 0.5, 1, 1.5 (and 2) s, not hundreds
    gaps = [b["mono"] - a["mono"] for a, b in zip(samples, samples[1:], strict=False)]
    assert min(gaps) >= 0.45, gaps


def test_report_of_a_timeline_with_log_draws_the_rows_match_pairs_with_it(
    tmp_path: Path,
) -> None:
    from timelinedata import headset_watch

    headset_watch(tmp_path / "tl").close()
    timeline = next((tmp_path / "tl").glob("*.jsonl"))
    log = tmp_path / "log.csv"
    log.write_text(
        "Date/Time;Agent;Status;Call ID\n"
        "02/12/2026 11:02:10;A-17;Failure (Rejected – SIP 403 Forbidden);c1\n",
        encoding="utf-8",
    )
    r = cli("report", str(timeline), "--log", str(log), "--format", "json")
    assert r.code == 0, r.err
    rows = r.json["log_rows"]
    assert [(x["call_id"], x["likely_cause"]) for x in rows] == [("c1", "audio.no_input_device")]
    html = cli("report", str(timeline), "--log", str(log), "--format", "html")
    assert html.out.count("class='log-row-marker") == 1
    refused = cli("report", str(log), "--log", str(log))
    assert refused.code == 64


def test_a_state_must_hold_two_samples_before_it_is_an_event() -> None:
    """One lost UDP answer is a measurement; two in a row are a change, dated at the first."""
    from diag.watch import Debounce
    from diag.watch_events import events_between

    t = [dt.datetime(2026, 12, 2, 11, m, tzinfo=dt.timezone.utc) for m in range(6)]
    d = Debounce()
    seen: list[tuple[str, Any]] = []
    prev = None
    for i, registered in enumerate([True, False, True, False, False, True]):
        steady = d.settle({"registered": registered, "registration_code": None}, t[i])
        for name, _ in events_between(prev, steady):
            seen.append((name, d.since(name) or t[i]))
        prev = steady
    assert seen == [("registration_lost", t[3])]  # the glitch at 11:01 is no event
    assert d.pending == {"registered": (True, t[5])}  # recovery waits for its second sample
    steady = d.settle({"registered": None}, t[5])
    assert steady["registered"] is False  # unknown changes nothing


@pytest.mark.parametrize("command", ["check", "watch"])
def test_a_password_in_the_registrar_uri_is_refused(command: str, tmp_path: Path) -> None:
    r = cli(command, "--registrar", "sip:alice:UriPass789@127.0.0.1:5082", "--only", "sip",
            "--out", str(tmp_path / "x.json"))  # fmt: skip
    assert r.code == 64, r.err
    assert "--registrar holds a password" in r.err and "UriPass789" not in r.err + r.out
    assert not (tmp_path / "x.json").exists()


# Enough arguments for each command to parse (its work never runs: the test breaks it first).
PARSES = {"explain": ["SIP 403"], "match": ["r.json", "--log", "l.csv"], "fleet": ["r.json"]}


def _commands() -> list[str]:
    import typer

    from diag.cli import app

    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    return sorted(group.commands)


@pytest.mark.parametrize("command", _commands())
def test_the_internal_error_hint_names_an_option_the_command_accepts(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Here rather than in test_cli.py, which another change owns.) The boundary's "re-run
    with --debug" must work for every command: each breaks after parsing its arguments, once
    as given and once re-run as the hint says."""
    import re

    import typer

    def broken(self: object, ctx: object) -> None:
        raise RuntimeError("sipdiag bug \x1b[2J")

    monkeypatch.setattr(typer.core.TyperCommand, "invoke", broken)
    first = cli(command, *PARSES.get(command, []))
    assert first.code == 70, first.err
    hint = re.search(r"re-run with (--[a-z-]+)", first.err)
    assert hint is not None and "Traceback" not in first.err, first.err
    again = cli(command, *PARSES.get(command, []), hint.group(1))
    assert again.code == 70, again.err  # not 64 "No such option"
    assert "Traceback" in again.err and "RuntimeError: sipdiag bug ␛[2J" in again.err, again.err
    assert "\x1b" not in again.err  # a hostile file's text in a message is shown, not obeyed
