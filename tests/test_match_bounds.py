"""`sipdiag match` bounds its work: a hostile line is one malformed row, DuckDB keeps within a
memory limit and spills under the temporary directory, and a full temporary directory is a
one-line error (issue 16, defect 12)."""

from __future__ import annotations

import gzip
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelp import CliResult, cli, cli_process

from diag.logs import log_export, report_set

HEADER = "Date/Time,Agent,Status"
ROW = "01/12/2026 10:00:00,A-18,Failure (No Answer)"


def match(log: Path, reports: Path, *args: str) -> CliResult:
    return cli("match", "--log", str(log), str(reports), "--format", "json", *args)


@pytest.fixture
def no_reports(tmp_path: Path) -> Path:
    directory = tmp_path / "reports"
    directory.mkdir()
    return directory


def malformed(r: CliResult) -> list[tuple[int, str]]:
    assert r.code == 0, r.err
    return [(m["line"], m["reason"]) for m in r.json["malformed"]]


def test_a_line_of_200000_fields_is_one_malformed_row_with_its_line_number(
    tmp_path: Path, no_reports: Path
) -> None:
    log = tmp_path / "hostile.csv"
    log.write_text("\n".join([HEADER, ROW, ",".join(["x"] * 200_000), ROW, f"{ROW},extra"]) + "\n")
    r = match(log, no_reports)
    assert malformed(r) == [(3, "too many columns"), (5, "too many columns")]
    assert [row["line"] for row in r.json["rows"]] == [2, 4]
    assert r.json["summary"]["rows_read"] == 4
    (hostile, _) = r.json["malformed"]
    assert hostile["text"].startswith("x,x,x") and len(hostile["text"]) <= 201


def test_many_lines_a_few_fields_too_long_are_each_one_malformed_row(
    tmp_path: Path, no_reports: Path
) -> None:
    wide = ROW + ",x" * 300  # 300 fields too many, 2,000 times: past the rejects' budget
    log = tmp_path / "wide.csv.gz"
    log.write_bytes(gzip.compress(("\n".join([HEADER, *[wide] * 2000, ROW]) + "\n").encode()))
    r = match(log, no_reports)
    assert malformed(r) == [(line, "too many columns") for line in range(2, 2002)]
    assert [row["line"] for row in r.json["rows"]] == [2002]
    # Listed from the guarded copy, cut short: the reader never stored 300 copies of each.
    assert all(m["text"].endswith("…") and len(m["text"]) == 201 for m in r.json["malformed"])


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_line_longer_than_the_limit_is_one_malformed_row(
    tmp_path: Path, no_reports: Path, gzipped: bool
) -> None:
    long_line = f"{ROW} and then some{'.' * log_export.MAX_LINE_BYTES}"
    text = "\r\n".join([HEADER, ROW, long_line, ROW]) + "\r\n"
    log = tmp_path / ("long.csv.gz" if gzipped else "long.csv")
    log.write_bytes(gzip.compress(text.encode()) if gzipped else text.encode())
    before = set(Path(tempfile.gettempdir()).glob("sipdiag-export-*"))
    r = match(log, no_reports)
    assert set(Path(tempfile.gettempdir()).glob("sipdiag-export-*")) == before
    assert malformed(r) == [(3, "line too long")]
    assert [row["line"] for row in r.json["rows"]] == [2, 4]
    assert r.json["malformed"][0]["text"].startswith(ROW)


def test_a_windows_1252_export_with_a_hostile_line_keeps_its_encoding_and_line_numbers(
    tmp_path: Path, no_reports: Path
) -> None:
    text = "\n".join([HEADER, ROW + " é", ";".join(["é"] * 100_000) + "," * 100_000, ROW])
    log = tmp_path / "excel.csv"
    log.write_bytes((text + "\n").encode("cp1252"))
    r = match(log, no_reports)
    assert malformed(r) == [(3, "too many columns")]
    assert r.json["summary"]["encoding"] == "cp1252"
    assert [row["line"] for row in r.json["rows"]] == [2, 4]


def test_a_json_line_of_200000_separators_is_one_malformed_row(
    tmp_path: Path, no_reports: Path
) -> None:
    good = json.dumps({"time": "2026-12-01T10:00:00Z", "agent": "A-18", "status": "Failure"})
    log = tmp_path / "hostile.jsonl"
    log.write_text("\n".join([good, '{"a": "' + "\x1f" * 200_000 + '"}', good]) + "\n")
    r = match(log, no_reports)
    assert malformed(r) == [(2, "not valid JSON")]
    assert [row["line"] for row in r.json["rows"]] == [1, 3]


def test_duckdb_keeps_within_a_memory_limit_and_spills_under_the_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    con = report_set.connect()
    limit, threads, spill = (
        con.execute(
            "SELECT current_setting('memory_limit'), current_setting('threads'), "
            "current_setting('temp_directory')"
        ).fetchone()
        or ()
    )
    assert limit == "512.0 MiB" and 1 <= threads <= report_set.MAX_THREADS
    assert Path(spill).parent == tmp_path and Path(spill).name.startswith("sipdiag-duckdb-")
    con.close()


def test_the_spill_directories_of_processes_that_are_gone_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    (tmp_path / f"sipdiag-duckdb-{dead.pid}-0").mkdir()
    (tmp_path / f"sipdiag-duckdb-{dead.pid}-0" / "duckdb_temp_block-1.block").write_bytes(b"x")
    (tmp_path / "sipdiag-duckdb-1-0").mkdir()  # pid 1: alive
    report_set.connect().close()
    assert sorted(p.name for p in tmp_path.glob("sipdiag-duckdb-*")) == ["sipdiag-duckdb-1-0"]


@pytest.fixture
def tiny_tmp(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system, standing for a temporary directory that is full."""
    directory = tmp_path / "tiny"
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def test_a_full_temporary_directory_is_a_one_line_error(
    tmp_path: Path, no_reports: Path, tiny_tmp: Path
) -> None:
    # A long line makes sipdiag read a copy, which needs more room than there is.
    log = tmp_path / "long.csv"
    log.write_text("\n".join([HEADER, *[ROW] * 50_000, "x" * (2 << 20), ROW]) + "\n")
    r = cli_process("match", "--log", str(log), str(no_reports), env={"TMPDIR": str(tiny_tmp)})
    assert r.code == 70, r.err
    assert r.err == (
        f"sipdiag: error: no room in the temporary directory {tiny_tmp} for a copy of --log "
        f"{log} with its long lines cut (hint: free space there, or point TMPDIR at a directory "
        "with room (about the export's uncompressed size))\n"
    )
    assert list(tiny_tmp.iterdir()) == []


def test_duckdb_without_room_to_spill_is_a_one_line_error(
    tmp_path: Path, no_reports: Path, tiny_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tiny_tmp))
    monkeypatch.setattr(report_set, "MEMORY_LIMIT", "32MiB")
    monkeypatch.setattr(report_set, "MAX_THREADS", 1)
    log = tmp_path / "failures.csv"
    with log.open("w") as f:
        f.write(HEADER + "\n")
        for i in range(400_000):
            f.write(f"01/12/2026 10:{i // 60 % 60:02d}:{i % 60:02d},A-{i},Failure (No Answer)\n")
    r = match(log, no_reports)
    assert r.code == 70, r.err
    assert r.err == (
        f"sipdiag: error: no room in the temporary directory {tiny_tmp} for DuckDB's working "
        "files (hint: free space there, or point TMPDIR at a directory with room (about the "
        "export's uncompressed size))\n"
    )


def test_a_full_temporary_directory_while_the_output_is_written_is_a_one_line_error(
    tmp_path: Path, no_reports: Path, tiny_tmp: Path
) -> None:
    log = tmp_path / "failures.csv"
    with log.open("w") as f:
        f.write(HEADER + "\n")
        for i in range(60_000):  # matched in memory; their CSV is some MB: more than 1 MiB
            f.write(f"01/12/2026 10:{i // 60 % 60:02d}:{i % 60:02d},A-{i},Failure (No Answer)\n")
    r = cli_process(
        "match", "--log", str(log), str(no_reports), "--format", "csv",
        env={"TMPDIR": str(tiny_tmp)},
    )  # fmt: skip
    assert r.code == 70, r.err
    assert r.err.startswith(f"sipdiag: error: no room in the temporary directory {tiny_tmp}")
    assert len(r.err.strip().splitlines()) == 1 and "internal error" not in r.err
