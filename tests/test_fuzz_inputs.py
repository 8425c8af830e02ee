"""Fuzzing the files a user hands sipdiag (issue 16): profiles, policies, saved reports (one,
as `report` reads it, and many, as `match`/`fleet` check them) and central-log exports (CSV
dialects and encodings, JSON Lines, gzip). The contract: a usage error (UsageError) or a valid
result, never another exception, each example within the profile's deadline."""

from __future__ import annotations

import copy
import gzip
import json
import math
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fuzzprofile
from hypothesis import example, given
from hypothesis import strategies as st

from diag import policy as pol
from diag.config import build_settings
from diag.errors import UsageError
from diag.logs import log_export, report_set
from diag.saved import load_report
from diag.settings import PROFILE_KEYS


@contextmanager
def written(data: bytes, suffix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sipdiag-fuzz-") as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        yield path


def _one_line(exc: UsageError) -> bool:
    """What the CLI prints of a usage error is one line, with no control character in it."""
    line = exc.one_line()
    return not any(c in line for c in "\n\r\x1b\x00")


# ---- TOML documents: mostly well-formed, with values of every kind, sometimes mangled

SCALARS = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are TOML's (a lone surrogate is refused)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


TOML_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def toml_documents(draw: st.DrawFn, keys: list[str], values: st.SearchStrategy[Any]) -> bytes:
    """key = value lines (keys mostly known), maybe a [table], maybe noise, in some encoding."""
    lines = []
    for key in draw(
        st.lists(st.one_of(st.sampled_from(keys), st.text(max_size=10)), max_size=6, unique=True)
    ):
        lines.append(f"{json.dumps(key)} = {toml_value(draw(values))}")
    if draw(st.integers(0, 5)) == 0:
        lines.append(draw(st.text(max_size=40)))
    text = "\n".join(lines) + "\n"
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "cp1252"]))
    return text.encode(encoding, "surrogatepass" if encoding.startswith("utf-8") else "replace")


# ---- profiles

PROFILE_STRINGS = st.sampled_from(
    [
        "sip:registrar.example.com", "sips:[2001:db8::1]:5061", "224.0.0.1", "udp", "tcp", "tls",
        "ws", "wss://ws.example.com:99999/", "wss://ws.example.com/sip", "ws://h:0", "http://x",
        "10000-10100", "10100-10000", "5080", "0", "+442079460123", "json", "html", "warn", "",
        " ", "Europe/London", "host", "sip", "stun.example.com:3478", "turn:u@h", "a\x00b",
    ]
)  # fmt: skip
PROFILE_VALUES = st.one_of(PROFILE_STRINGS, st.lists(PROFILE_STRINGS, max_size=3), TOML_VALUES)


@fuzzprofile.slow(3)
@given(toml_documents(list(PROFILE_KEYS) + ["password", "turn_password"], PROFILE_VALUES))
@example(b'"\\n" = "sip:registrar.example.com"\n')  # a key holding a newline (bench run)
def test_a_profile_gives_settings_or_a_usage_error(data: bytes) -> None:
    with written(data, ".toml") as path:
        try:
            settings = build_settings(path, {})
        except UsageError as exc:
            assert _one_line(exc)
            return
    assert settings.timeout is None or math.isfinite(settings.timeout)


# ---- policies

POLICY_STRINGS = st.one_of(
    st.sampled_from(["+44", "+4420 7946 0123", "+1(555)", "44", "+", "GB", "gb", "GBR", "mobile",
                     "Premium_Rate", "allow", "deny", "+" + "9" * 16]),
    st.from_regex(r"\+[0-9 ().-]{0,18}", fullmatch=True),
)  # fmt: skip


@st.composite
def policy_documents(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(toml_documents(["default", "allow", "deny"], TOML_VALUES))
    lines = []
    if draw(st.booleans()):
        lines.append(
            f"default = {toml_value(draw(st.one_of(st.sampled_from(['allow', 'deny']), SCALARS)))}"
        )
    for side in draw(
        st.lists(st.sampled_from(["allow", "deny", "other"]), max_size=2, unique=True)
    ):
        lines.append(f"[{side}]")
        for kind in draw(st.lists(st.sampled_from([*pol.KINDS, "bogus"]), max_size=3, unique=True)):
            values = draw(st.one_of(st.lists(POLICY_STRINGS, max_size=4), TOML_VALUES))
            lines.append(f"{kind} = {toml_value(values)}")
    return ("\n".join(lines) + "\n").encode()


FACTS = st.builds(
    pol.NumberFacts,
    st.from_regex(r"\+[0-9]{1,15}", fullmatch=True),
    st.one_of(st.none(), st.sampled_from(["GB", "IE", "US"])),
    st.sampled_from(pol.NUMBER_TYPES),
)


@fuzzprofile.slow(3)
@given(policy_documents(), FACTS)
def test_a_policy_loads_valid_rules_or_a_usage_error(data: bytes, facts: pol.NumberFacts) -> None:
    with written(data, ".toml") as path:
        try:
            policy = pol.load_policy(path)
        except UsageError as exc:
            assert _one_line(exc) and str(exc).startswith(("policy ", "policy file "))
            return
    assert policy.default in pol.DEFAULTS
    for rules in (policy.allow, policy.deny):
        assert all(re.fullmatch(r"\+\d{1,15}", v) for v in (*rules.numbers, *rules.prefixes))
        assert set(rules.types) <= set(pol.NUMBER_TYPES)
        assert all(re.fullmatch(r"[A-Z]{2}", c) for c in rules.countries)
    decision = pol.evaluate(policy, facts)
    assert decision.rule.startswith(("allow.", "deny.", "default = "))
    assert decision.permitted == (
        decision.rule.startswith("allow.") or decision.rule == 'default = "allow"'
    )


# ---- saved reports

FINDING = {
    "cause": "sip.forbidden", "family": "registration", "severity": "critical", "title": "403",
    "explanation": "The registrar refused.", "action": "Ask the platform team.",
    "evidence": {"checks": ["sip.register"]},
}  # fmt: skip
CHECK = {
    "id": "sip.register", "title": "Registrar accepts our REGISTER", "status": "fail",
    "summary": "403 Forbidden", "hint": "check the account", "duration_ms": 12,
    "details": {"status_code": 403, "reason": "Forbidden"},
}  # fmt: skip
REPORT: dict[str, Any] = {
    "schema_version": 1,
    "tool": {"name": "sipdiag", "version": "0.1.0"},
    "run_id": "222a70e1-7e00-48a1-a050-4ebbbbe86283",
    "started_at": "2026-12-02T10:53:04.336Z",
    "finished_at": "2026-12-02T10:53:04.358Z",
    "duration_ms": 22,
    "complete": True,
    "host": {"hostname": "vm", "os": "Linux", "os_version": "6", "python": "3.11.7", "user": "root",
             "interfaces": [{"name": "eth0", "addresses": ["192.0.2.2"], "is_up": True,
                             "is_vpn": False}],
             "proxies": {}},
    "agent": {"id": "A-17", "sip_uri": "sip:alice@example.com", "numbers": ["+442071234567"]},
    "target": {"registrar": "sip:example.com", "domain": "example.com", "transports": ["udp"],
               "ws_url": None},
    "checks": [CHECK],
    "findings": [FINDING],
    "correlation": {"user_agent": "sipdiag/0.1.0", "call_ids": ["c1@h"],
                    "local_addresses": ["192.0.2.2"], "public_addresses": [],
                    "clock_offset_ms": 12.5},
    "verdict": "failing",
}  # fmt: skip

HOSTILE_TEXT = st.sampled_from(["\ud800", "\udfff", "\x1b[31m", "<script>", "\u202e", "\x00"])
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
        HOSTILE_TEXT,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    """A sipdiag report with a few fields replaced by any JSON value, or removed."""
    doc = copy.deepcopy(REPORT)
    for _ in range(draw(st.integers(0, 4))):
        paths = _paths(doc)
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        parent = doc
        for key in parents:
            parent = parent[key]
        how = draw(st.integers(0, 3))
        if how == 0:
            del parent[last]
        elif how == 1 and isinstance(parent[last], str):  # text that must still be written out
            parent[last] += draw(HOSTILE_TEXT)
        else:
            parent[last] = draw(JSON_VALUES)
    return doc


def _encoded(doc: Any, layout: int) -> bytes:
    """The report as sipdiag writes it (indent 2), on one line, or cut short."""
    text = json.dumps(doc, indent=2 if layout else None)
    raw = text.encode("utf-8", "surrogatepass")
    return raw[: len(raw) // 2] if layout == 2 else raw


@fuzzprofile.slow(2)
@given(reports(), st.sampled_from([0, 1, 1, 1, 2]), st.sampled_from(["text", "md", "html", "json"]))
# Found by this test: `sipdiag report --format md|html|json` exited 70 (UnicodeEncodeError).
@example({**REPORT, "host": {**REPORT["host"], "hostname": "vm\ud800"}}, 1, "json")
def test_a_saved_report_renders_or_is_a_usage_error(
    doc: dict[str, Any], layout: int, fmt: str
) -> None:
    """`sipdiag report`: load_report's UsageError, or a rendering that fails only as the command
    expects (saved_commands.run_report_command turns these into a usage error)."""
    from diag.render import Marks, render

    with written(_encoded(doc, layout), ".json") as path:
        try:
            report = load_report(path)
        except UsageError:
            return
    try:
        text = render(report, fmt, Marks.for_encoding("utf-8"), False)
    except (KeyError, TypeError, AttributeError, ValueError):
        return
    text.encode("utf-8")  # what --out and a UTF-8 terminal are given


REASONS = ("unreadable", "not valid JSON", "not a sipdiag report")


@fuzzprofile.slow(2)
@given(st.lists(st.tuples(reports(), st.sampled_from([0, 1, 2])), min_size=1, max_size=3))
def test_many_reports_are_each_kept_or_skipped_with_a_reason(
    docs: list[tuple[dict[str, Any], int]],
) -> None:
    """`match`/`fleet`: every file is a row of table `reports` or skipped with a known reason."""
    with tempfile.TemporaryDirectory(prefix="sipdiag-fuzz-") as tmp:
        paths = []
        for n, (doc, layout) in enumerate(docs):
            path = Path(tmp) / f"r{n}.json"
            path.write_bytes(_encoded(doc, layout))
            paths.append(path)
        parsed = report_set.parse(paths)
        for s in parsed.skipped:
            assert s["reason"] in REASONS or re.fullmatch(
                r"invalid sipdiag report \(.+\)", s["reason"]
            )
        for line in parsed.ndjson.splitlines():
            wrapped = json.loads(line)
            assert set(wrapped) == {"i", "path", "doc"}
        con = report_set.connect()
        try:
            loaded = report_set.to_table(con, parsed)
            assert loaded.count + len(loaded.skipped) == len(paths)
            con.execute("SELECT * FROM reports").fetchall()
        finally:
            con.close()


# ---- central-log exports

TIMES = st.one_of(
    st.sampled_from(
        ["2026-11-27T10:00:00Z", "2026-11-27 10:00:00", "27/11/2026 10:00:00", "27/11/2026 10:00",
         "27.11.2026 10:00:00", "2026/11/27 10:00:00", "1764237600", "1764237600123", "",
         "99999999999999999999999", "-1e400", "2026-11-27T10:00:00+99:99", "9999-12-31T23:59:59Z",
         "294247-01-10T04:00:54Z", "yesterday", "NaN"]
    ),
    st.integers(-(2**70), 2**70).map(str),
    st.datetimes().map(lambda d: d.isoformat()),
    st.text(max_size=12),
)  # fmt: skip
CELLS = st.one_of(
    st.sampled_from(["A-17", "alice", "sip:alice@example.com", "+442071234567", "Success", "",
                     "Failure (Rejected - SIP 403 Forbidden)", '"', "x,y", "a\nb"]),
    st.text(max_size=15),
)  # fmt: skip
HEADERS = st.sampled_from(
    ["Date/Time", "time", "Timestamp", "Agent", "Agent ID", "Status", "Offer status", "Call-ID",
     "Number", "Result", "Extension", "x", "", "time"]
)  # fmt: skip


def _csv_field(value: str, delim: str, quote: bool) -> str:
    if quote or any(c in value for c in (delim, '"', "\n", "\r")):
        return '"' + value.replace('"', '""') + '"'
    return value


@st.composite
def csv_exports(draw: st.DrawFn) -> bytes:
    columns = draw(st.lists(st.one_of(HEADERS, st.text(max_size=8)), min_size=1, max_size=5))
    if draw(st.integers(0, 3)):  # usually an export match can read: time, agent, status
        columns = ["Date/Time", "Agent", "Offer status", *columns][: max(3, len(columns))]
    delim = draw(st.sampled_from([",", ";", "\t", "|"]))
    quote = draw(st.booleans())
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines = [
        draw(st.sampled_from(["Audit export, 27/11/2026", ""]))
        for _ in range(draw(st.integers(0, 2)))
    ]
    lines.append(delim.join(_csv_field(c, delim, quote) for c in columns))
    for _ in range(draw(st.integers(0, 6))):
        cells = [draw(TIMES)] + [draw(CELLS) for _ in columns[1:]]
        cells = cells[: draw(st.integers(len(cells) - 1, len(cells) + 1))] + [""] * draw(
            st.integers(0, 1)
        )
        lines.append(delim.join(_csv_field(c, delim, quote) for c in cells))
    text = eol.join(lines) + draw(st.sampled_from([eol, ""]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    return text.encode(encoding, "replace")


@st.composite
def jsonl_exports(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        row = {"time": draw(TIMES), "agent": draw(CELLS), "status": draw(CELLS)}
        row.update(
            draw(st.dictionaries(st.one_of(HEADERS, st.text(max_size=6)), JSON_VALUES, max_size=2))
        )
        line = json.dumps(row)
        if draw(st.integers(0, 6)) == 0:
            line = draw(st.sampled_from([line[:-3], "[1, 2]", "", "not json", '{"time": 1}']))
        lines.append(line)
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@fuzzprofile.slow(5)
@given(
    st.one_of(csv_exports(), jsonl_exports()),
    st.booleans(),
    st.sampled_from(["UTC", "Europe/London"]),
)
@example(b"time,agent,status\n1700000000,a,x\n99999999999999999999999,b,y\n", False, "UTC")  # found
def test_a_log_export_loads_or_is_a_usage_error(data: bytes, gzipped: bool, tz: str) -> None:
    """The table `log` match reads, with malformed rows named by line; or a usage error."""
    with written(gzip.compress(data) if gzipped else data, ".csv") as path:
        con = report_set.connect()
        try:
            try:
                export = log_export.load(con, path, {}, tz)
            except UsageError as exc:
                assert str(exc).strip()
                return
            assert export.kind in ("csv", "jsonl")
            assert export.encoding in ("utf-8", "cp1252", "utf-16")
            assert set(export.columns) <= set(log_export.FIELDS)
            assert export.rows_read >= 0 and export.first_line >= 1
            lines = max(1, data.count(b"\n") + data.count(b"\r") + 1) * 2  # utf-16: 2 bytes each
            assert all(1 <= m["line"] <= lines for m in export.malformed)
            assert all(isinstance(s, str) for s in export.statuses)
            # What match then asks of the export must run too.
            (rows,) = con.execute("SELECT count(*) FROM log").fetchone() or (0,)
            assert rows + len(export.rejected_lines) == export.rows_read
            con.execute(
                f"SELECT count(*) FROM {export.source} WHERE {export.readable()}"
            ).fetchall()
        finally:
            con.close()
