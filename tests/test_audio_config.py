"""The audio and softphone flags and profile keys: parsing, validation, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from clihelp import cli, registered

from diag.config import build_settings


def test_flags_reach_the_settings() -> None:
    s = build_settings(
        None,
        {
            "input_device": "Jabra",
            "output_device": "Jabra",
            "capture_seconds": 0.5,
            "play_tone": True,
            "softphone_processes": ["zoiper", "chrome"],
            "softphone_ports": ["5080", "10000-10100"],
        },
    )
    assert (s.input_device, s.output_device, s.capture_seconds, s.play_tone) == (
        "Jabra",
        "Jabra",
        0.5,
        True,
    )
    assert s.softphone_processes == ("zoiper", "chrome")
    assert s.softphone_ports == ("5080", "10000-10100")


def test_defaults_capture_one_second_and_play_no_tone() -> None:
    s = build_settings(None, {})
    assert s.capture_seconds == 1.0 and s.play_tone is False
    assert s.input_device is None and s.softphone_processes == ()


def test_profile_keys(tmp_path: Path) -> None:
    p = tmp_path / "p.toml"
    p.write_text(
        'input_device = "Jabra"\noutput_device = "Jabra"\ncapture_seconds = 2\n'
        'play_tone = true\nsoftphone_processes = ["zoiper"]\nsoftphone_ports = [5080]\n'
    )
    s = build_settings(p, {"capture_seconds": 0.5})  # a flag overrides the profile
    assert s.capture_seconds == 0.5 and s.play_tone is True
    assert s.softphone_ports == ("5080",) and s.input_device == "Jabra"


@pytest.mark.parametrize(
    ("toml", "line"),
    [
        ("play_tone = 1", "'play_tone' must be true or false (hint: e.g. true)"),
        ('capture_seconds = "1"', "'capture_seconds' must be a number of seconds"),
        ("softphone_processes = [1]", "'softphone_processes' must be a list of strings"),
        ("softphone_ports = [5060.5]", "'softphone_ports' must be a list of strings"),
    ],
)
def test_bad_profile_values_are_one_line_usage_errors(tmp_path: Path, toml: str, line: str) -> None:
    p = tmp_path / "p.toml"
    p.write_text(toml + "\n")
    r = cli("check", "--profile", str(p), registry=registered("audio.permission"))
    assert r.code == 64
    assert line in r.err and r.err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--capture-seconds", "0"],
            "sipdiag: error: --capture-seconds must be between 0 and 30, got 0 "
            "(hint: e.g. --capture-seconds 1)",
        ),
        (
            ["--capture-seconds", "31"],
            "sipdiag: error: --capture-seconds must be between 0 and 30, got 31 "
            "(hint: e.g. --capture-seconds 1)",
        ),
        (
            ["--capture-seconds", "nan"],
            "sipdiag: error: --capture-seconds must be between 0 and 30, got nan "
            "(hint: e.g. --capture-seconds 1)",
        ),
        (
            ["--input-device", " "],
            "sipdiag: error: --input-device is empty "
            "(hint: give part of the device name, e.g. --input-device Jabra)",
        ),
        (
            ["--softphone-process", ""],
            "sipdiag: error: an empty --softphone-process was given "
            "(hint: e.g. --softphone-process zoiper)",
        ),
    ],
)
def test_bad_flags_are_one_line_usage_errors(args: list[str], line: str) -> None:
    r = cli("check", *args, registry=registered("audio.permission"))
    assert r.code == 64
    assert r.err.strip() == line


def test_help_documents_the_new_flags() -> None:
    out = cli("check", "--help").out
    for flag in (
        "--input-device",
        "--output-device",
        "--capture-seconds",
        "--play-tone",
        "--softphone-process",
        "--softphone-port",
    ):
        assert flag in out, flag
