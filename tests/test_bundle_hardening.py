"""Issue 16 hardening of `sipdiag bundle`: where --out writes."""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli_process


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(XDG_DATA_HOME, saved report) of a quick real run."""
    data = tmp_path_factory.mktemp("data")
    r = cli_process("check", "--only", "host.os", env={"XDG_DATA_HOME": str(data)})
    assert r.code == 0, r.err
    return data, next(data.glob("sipdiag/reports/sipdiag-*.json"))


def _bundle(saved: tuple[Path, Path], *args: str) -> Any:
    data, report = saved
    return cli_process("bundle", str(report), *args, env={"XDG_DATA_HOME": str(data)})


def _unzip(data: bytes) -> dict[str, str]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name).decode("utf-8") for name in zf.namelist()}


@contextlib.contextmanager
def _device_kept(path: str) -> Iterator[int]:
    """Yields the device number; puts the node back if a regression replaced it (we are root:
    a broken /dev/null would break every other process on the machine)."""
    before = os.stat(path)
    assert stat.S_ISCHR(before.st_mode)
    try:
        yield before.st_rdev
    finally:
        if not stat.S_ISCHR(os.lstat(path).st_mode):
            os.unlink(path)
            os.mknod(path, stat.S_IFCHR | stat.S_IMODE(before.st_mode), before.st_rdev)


def test_bundle_out_dev_null_writes_through_and_leaves_the_character_device(
    saved: tuple[Path, Path],
) -> None:
    with _device_kept("/dev/null") as rdev:
        r = _bundle(saved, "--out", "/dev/null")
        after = os.stat("/dev/null")
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == rdev
    assert r.code == 0, r.err
    assert "sipdiag: bundle written to /dev/null" in r.err


def test_bundle_out_dev_full_exits_70_with_a_one_line_error(saved: tuple[Path, Path]) -> None:
    with _device_kept("/dev/full") as rdev:
        r = _bundle(saved, "--out", "/dev/full")
        assert stat.S_ISCHR(os.stat("/dev/full").st_mode)
        assert os.stat("/dev/full").st_rdev == rdev
    assert r.code == 70, r.err
    assert r.err.splitlines() == [
        "sipdiag: error: cannot write the bundle /dev/full: No space left on device "
        "(hint: choose another --out path)"
    ]


def test_bundle_out_a_symlink_writes_the_zip_to_its_target(
    saved: tuple[Path, Path], tmp_path: Path
) -> None:
    target = tmp_path / "ticket.zip"
    target.write_bytes(b"old")
    link = tmp_path / "latest.zip"
    link.symlink_to(target)
    r = _bundle(saved, "--out", str(link))
    assert r.code == 0, r.err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert "report.json" in _unzip(target.read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.zip", "ticket.zip"]


def test_bundle_out_a_fifo_streams_a_valid_zip_into_it(
    saved: tuple[Path, Path], tmp_path: Path
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    r = _bundle(saved, "--out", str(fifo))
    reader.join(10)
    assert r.code == 0, r.err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    files = _unzip(received[0])
    assert sorted(files) == ["manifest.json", "report.html", "report.json"]
    assert json.loads(files["report.json"])["run_id"] == json.loads(saved[1].read_text())["run_id"]
