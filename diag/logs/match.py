"""`sipdiag match`: each failure in a central-log export, explained and paired with a report.

The pairing is one DuckDB query: a row's Call-ID found in a report's `correlation.call_ids`
matches outright; otherwise the same agent's report nearest in time within the window, before or
after (report times corrected by `clock_offset_ms`): a hash join on the agent key with the window as
a range condition while agents have few reports each, else ASOF joins in both directions. A row
about an offer to the agent (403, No Answer, ...) also gets the paired report's sip.inbound and
net.idle results as lines of evidence, and a row of sipdiag's own `--inbound-call` test call is
labelled as such (diag/logs/inbound.py). Rows of an agent with a `sipdiag watch` timeline are
paired with its state at that time as well (diag/logs/timeline_match.py), and the nearer evidence,
report or timeline, decides the likely cause.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diag.errors import UsageError
from diag.lifecycle import is_interrupt
from diag.logs import explain, inbound, log_export, report_set, timeline_match, timeline_set

_FAILURE_WORDS = re.compile(r"fail|reject|error|timeout|timed out|unavailable|busy|declin|abandon")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, flag: str = "--window") -> int:
    """'4h', '90m', '1h30m', '45s', '2d' or plain seconds -> seconds."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+", t):
        return int(t)
    parts = re.findall(r"(\d+)\s*([smhd])", t)
    if not parts or re.sub(r"\s", "", "".join(n + u for n, u in parts)) != re.sub(r"\s", "", t):
        raise UsageError(f"invalid {flag} '{text}'", "use a duration such as 4h, 90m, 1h30m or 45s")
    return sum(int(n) * _UNITS[u] for n, u in parts)


# Key normalisation shared by both sides: case, spaces and separators don't matter, and a SIP URI
# also yields its user part, so "sip:1001@pbx" in a report matches "1001" in the log.
def _keys_sql(expr: str) -> str:
    norm = "lower(regexp_replace({x}, '[\\s().-]', '', 'g'))"
    user = f"regexp_extract({expr}, '^sips?:([^@;]+)', 1)"
    return f"[{norm.format(x=expr)}, CASE WHEN {user} <> '' THEN {norm.format(x=user)} END]"


@dataclass
class MatchResult:
    """`con` holds table `match_rows` (one row per failure); renderers read it with SQL, as
    building 10^5-10^6 Python dicts would dominate the run."""

    summary: dict[str, Any]
    con: Any
    malformed: list[dict[str, Any]]
    skipped_reports: list[dict[str, str]]
    skipped_timelines: list[dict[str, str]] = field(default_factory=list)


def _load_reports(con: Any, parsing: report_set.BackgroundParse) -> report_set.ReportSet:
    """Table `reports`, and `rkeys`: every report under each key that names its agent (ID,
    SIP URI and its user part, numbers), at its true time."""
    reports = report_set.to_table(con, parsing.result())
    con.execute(
        f"""CREATE OR REPLACE TABLE rkeys AS
        SELECT DISTINCT k AS key, t, run_id FROM (
          SELECT unnest({_keys_sql("v")}) AS k, t, run_id FROM (
            SELECT agent_id AS v, true_us AS t, run_id FROM reports
            UNION ALL SELECT sip_uri, true_us, run_id FROM reports
            UNION ALL SELECT unnest(numbers), true_us, run_id FROM reports))
        WHERE k IS NOT NULL AND k <> ''"""
    ).fetchall()
    return reports


def _failures_table(con: Any, export: log_export.LogExport, has_call_id: bool) -> None:
    """Table `statuses`: each distinct failure status with its catalogue entry's fields (NULL
    entry: not in the catalogue; `inbound`: the entry names sip.inbound or net.idle, whose
    results are evidence on it); table `failures`: the readable rows with such a status."""
    rows: list[tuple[Any, ...]] = []
    for status in export.statuses:
        entry = explain.lookup(status)
        if entry is None and not _FAILURE_WORDS.search(status.lower()):
            continue  # not a failure
        rows.append(
            (status, None, "unknown", [], None, None, False)
            if entry is None
            else (
                status,
                entry.status,
                entry.category,
                list(entry.cause_ids),
                "agent action: " + entry.meaning.split(":")[0].rstrip("."),
                entry.next_step,
                bool({inbound.INBOUND, inbound.IDLE} & set(entry.checks)),
            )
        )
    con.execute(
        "CREATE OR REPLACE TABLE statuses AS SELECT unnest(?::VARCHAR[]) AS status, "
        "unnest(?::VARCHAR[]) AS explained_as, unnest(?::VARCHAR[]) AS category, "
        "unnest(?::VARCHAR[][]) AS cause_ids, unnest(?::VARCHAR[]) AS agent_says, "
        "unnest(?::VARCHAR[]) AS next_step, unnest(?::BOOLEAN[]) AS inbound",
        [[r[i] for r in rows] for i in range(7)],
    ).fetchall()
    f = export.fields
    columns = ", ".join(
        f"{f[name]} AS {name}" if name != "call_id" or has_call_id else "NULL::VARCHAR AS call_id"
        for name in ("n", "ts_us", "agent", "status", "call_id", "number")
    )
    # The text of a row that holds "sipdiag" (sipdiag's own test call, _inbound_tests_table):
    # the export's other columns were tested while it was read, these on the failures alone.
    read = [f[name] for name in ("agent", "status", "call_id", "number")]
    marks = (
        f"CASE WHEN {f['marks']} IS NOT NULL OR "
        + " OR ".join(log_export.marked(x) for x in read)
        + f" THEN concat_ws(' | ', {', '.join([*read, f['marks']])}) END AS marks"
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE failures AS SELECT {columns}, {marks} FROM {export.source}
        WHERE {f["status"]} IN (SELECT status FROM statuses) AND {export.readable()}"""
    ).fetchall()


def _keys_table(con: Any, has_number: bool) -> None:
    """Table `fkeys(n, ts_us, key)`: each failure row under the keys of its agent and, when the
    export has one, its number; each distinct value is normalised once, not once per row."""
    values = "SELECT DISTINCT agent AS v FROM failures" + (
        " UNION SELECT DISTINCT number FROM failures" if has_number else ""
    )
    by_number = (
        "UNION SELECT f.n, f.ts_us, m.k FROM failures f JOIN names m ON f.number = m.v"
        if has_number
        else ""
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE fkeys AS
        WITH names AS (
          SELECT v, k FROM (
            SELECT v, unnest({_keys_sql("v")}) AS k FROM ({values}) WHERE v IS NOT NULL)
          WHERE k IS NOT NULL AND k <> '')
        SELECT f.n, f.ts_us, m.k AS key FROM failures f JOIN names m ON f.agent = m.v
        {by_number}"""
    ).fetchall()


# Which of a report's findings bear on a row, and what the row most probably means, decided in
# SQL for each (status, report) pair: a status whose catalogue entry names cause IDs takes those
# findings, any other status the critical and warning ones; most severe first, then report order.
_RANK = "CASE f.severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 WHEN 'info' THEN 2 ELSE 3 END"
_RELEVANT = f"""list_transform(
    list_sort(list_filter(
        list_transform(r.findings, lambda f, i: {{'rank': {_RANK}, 'pos': i,
            'cause': f.cause, 'severity': f.severity, 'title': f.title}}),
        lambda f: CASE WHEN len(s.cause_ids) > 0 THEN list_contains(s.cause_ids, f.cause)
                       ELSE f.severity IN ('critical', 'warning') END)),
    lambda f: {{'cause': f.cause, 'severity': f.severity, 'title': f.title}})"""
_LIKELY_CAUSE = """CASE
    WHEN s.explained_as IS NULL THEN 'status not in the catalogue (see `sipdiag explain`)'
        || coalesce('; report ' || left(p.run_id, 8) || ' shows '
                    || coalesce(e.relevant[1].cause, e.first_cause), '')
    WHEN s.category = 'agent_action' THEN s.agent_says
    WHEN p.run_id IS NULL THEN 'no report from this agent within the window: ' || s.next_step
    WHEN len(e.relevant) > 0 THEN e.relevant[1].cause || ' (' || coalesce(e.relevant[1].title, '')
        || ') in report ' || left(p.run_id, 8)
        || CASE WHEN len(e.relevant) > 1 THEN ' (+' || (len(e.relevant) - 1) || ' more)' ELSE '' END
    ELSE 'report ' || left(p.run_id, 8) || ' found nothing that explains it: ' || s.next_step
  END"""


def run_match(
    log_path: Path,
    report_paths: Sequence[Path],
    columns: Mapping[str, str],
    window_s: int,
    tz: str,
) -> MatchResult:
    """The export's failures, each explained and paired; DuckDB running out of its memory
    limit or of room to spill is a one-line error."""
    with resource_errors(log_path, "matching"):
        return _run_match(log_path, report_paths, columns, window_s, tz)


@contextlib.contextmanager
def resource_errors(log_path: Path, doing: str) -> Iterator[None]:
    """DuckDB out of memory, or a full temporary directory (while matching, or while the output
    is written through DuckDB's writer), as one line each instead of an internal error."""
    try:
        yield
    except Exception as exc:
        if is_interrupt(exc):
            raise
        if isinstance(exc, OSError) and log_export.is_disk_full(exc):
            raise log_export.no_room(f"the working files of {doing}") from None
        duckdb = sys.modules.get("duckdb")  # imported by report_set.connect, if it ran
        errors = () if duckdb is None else (duckdb.OutOfMemoryException, duckdb.IOException)
        if not isinstance(exc, errors):
            raise
        if log_export.is_disk_full(exc):
            raise log_export.no_room("DuckDB's working files") from None
        if duckdb is None or not isinstance(exc, duckdb.OutOfMemoryException):
            raise
        raise UsageError(
            f"--log {log_path} needs more than the {report_set.MEMORY_LIMIT} of memory "
            "sipdiag gives DuckDB",
            "split the export (by day, say) and match each part",
        ) from None


def _run_match(
    log_path: Path,
    report_paths: Sequence[Path],
    columns: Mapping[str, str],
    window_s: int,
    tz: str,
) -> MatchResult:
    # A missing path is a usage error before any work; timelines are not reports.
    found, timelines = timeline_set.split(report_paths)
    # Reports parse while DuckDB is imported, then load on a connection of their own while this
    # one scans the export and picks out its failures, which need no report. A usage error or
    # Ctrl-C stops the parsing (leaving the parsing context first, so the loader sees it).
    # Timelines load once the failures say which agents and times they are needed for.
    with ThreadPoolExecutor(max_workers=1) as side, report_set.BackgroundParse(*found) as parsing:
        con = report_set.connect()
        log_export.check_tz(con, tz)
        loading = side.submit(_load_reports, con.cursor(), parsing)
        export = log_export.load(con, log_path, columns, tz)
        has = {f: f in export.columns for f in ("call_id", "number")}
        _failures_table(con, export, has["call_id"])
        _keys_table(con, has["number"])
        watches = (
            timeline_match.load(con, timelines, window_s * 1_000_000, _keys_sql)
            if timelines.watches
            else 0
        )
        reports = loading.result()

    window_us = window_s * 1_000_000
    by_call = (
        """cids AS (SELECT run_id, true_us, unnest(call_ids) AS call_id FROM reports),
        by_call AS (
          SELECT f.n, arg_min(c.run_id, abs(c.true_us - f.ts_us)) AS run_id,
                 arg_min(c.true_us - f.ts_us, abs(c.true_us - f.ts_us)) AS d
          FROM failures f JOIN cids c ON f.call_id = c.call_id GROUP BY f.n)"""
        if has["call_id"]
        else "by_call AS (SELECT NULL::BIGINT AS n, NULL::VARCHAR AS run_id, NULL::BIGINT AS d "
        "WHERE false)"
    )
    # Only the matched rows: most failure rows in a large export have no report near them.
    con.execute(
        f"""CREATE OR REPLACE TABLE paired AS
        WITH {_by_time_sql(con, window_us)},
        {by_call}
        SELECT n, coalesce(c.run_id, t.run_id) AS run_id,
               CASE WHEN c.run_id IS NOT NULL THEN 'call_id' ELSE 'time' END AS matched_by,
               coalesce(c.d, t.d) AS d
        FROM by_call c FULL JOIN by_time t USING (n)"""
    ).fetchall()
    # What a row says depends only on its status and its report: decide each pair once.
    con.execute(
        "CREATE OR REPLACE TABLE pairs AS "
        "SELECT DISTINCT f.status, p.run_id FROM paired p JOIN failures f USING (n)"
    ).fetchall()
    inbound.load_probes(con)  # sip.inbound and net.idle of the reports rows need them from
    inbound.evidence_table(con)
    con.execute(
        f"""CREATE OR REPLACE TABLE explained AS
        SELECT status, run_id, relevant, first_cause, {inbound.EVIDENCE_LINES}
        FROM (
          SELECT p.status, p.run_id, {_RELEVANT} AS relevant, r.findings[1].cause AS first_cause,
                 CASE WHEN s.inbound THEN coalesce(v.evidence, []) ELSE [] END AS evidence
          FROM pairs p
          JOIN (SELECT run_id, any_value(findings ORDER BY path) AS findings
                FROM reports GROUP BY run_id) r USING (run_id)
          JOIN statuses s USING (status) LEFT JOIN evidence v USING (run_id))"""
    ).fetchall()
    tests = inbound.tests_table(con)
    (has_evidence,) = con.execute(
        "SELECT coalesce(bool_or(len(evidence_long) > 0), false) FROM explained"
    ).fetchone() or (False,)
    has_rejects = _rejected_table(con, export)
    by_timeline = timeline_match.pair(con, window_us) if watches else 0
    decided_by = (
        timeline_match.DECIDED_BY
        if by_timeline
        else ("CASE WHEN p.run_id IS NOT NULL THEN 'report' END")
    )
    likely_cause = (
        f"CASE WHEN {decided_by} = 'timeline' THEN tp.explanation ELSE {_LIKELY_CAUSE} END"
        if by_timeline
        else _LIKELY_CAUSE
    )
    # A view: renderers stream it out once (COPY / string_agg) instead of storing it first.
    con.execute(
        f"""CREATE OR REPLACE VIEW match_rows AS
        SELECT f.n, f.n + {"coalesce(j.before, 0) + " if has_rejects else ""}
                 {int(export.first_line)} AS line,
               strftime(make_timestamp(f.ts_us), '%Y-%m-%dT%H:%M:%SZ') AS time,
               f.agent, f.status, s.explained_as, s.category, f.call_id, f.number, p.run_id,
               p.matched_by, round(p.d / 1e6, 3) AS report_offset_s,
               coalesce(e.relevant, []) AS findings,
               coalesce(array_to_string(list_transform(e.relevant, lambda f: f.cause), ';'), '')
                 AS finding_causes,
               {inbound.labelled(tests, likely_cause)}, {inbound.evidence_column(has_evidence)},
               {decided_by} AS decided_by,
               {timeline_match.COLUMNS if by_timeline else timeline_match.NO_COLUMNS}
        FROM failures f JOIN statuses s USING (status) LEFT JOIN paired p USING (n)
        LEFT JOIN explained e ON e.status = f.status AND e.run_id = p.run_id
        {"LEFT JOIN tpaired tp USING (n)" if by_timeline else ""}
        {"LEFT JOIN inbound_tests l USING (n)" if tests else ""}
        {"ASOF LEFT JOIN rejected_before j ON f.n >= j.k" if has_rejects else ""}"""
    ).fetchall()
    watch = "tp.watch_id" if by_timeline else "NULL"
    counts = con.execute(
        f"""SELECT s.category, count(*), count(coalesce(p.run_id, {watch})),
                  count(*) FILTER (p.matched_by = 'call_id'), count({watch}),
                  count(*) FILTER ({decided_by} = 'timeline')
        FROM failures f JOIN statuses s USING (status) LEFT JOIN paired p USING (n)
        {"LEFT JOIN tpaired tp USING (n)" if by_timeline else ""}
        GROUP BY s.category ORDER BY s.category"""
    ).fetchall()
    categories = {c: n for c, n, *_ in counts}
    failures = sum(categories.values())
    matched, by_call_id, with_timeline, decided = (sum(c[i] for c in counts) for i in range(2, 6))
    summary = {
        "rows_read": export.rows_read,
        "rows_skipped": len(export.malformed),
        "failures": failures,
        "by_category": categories,
        "matched": matched,
        "matched_by_call_id": by_call_id,
        "matched_by_timeline": with_timeline,
        "decided_by_timeline": decided,
        "unmatched": failures - matched,
        "inbound_tests": tests,
        "reports_read": reports.count,
        "reports_skipped": len(reports.skipped),
        "timelines_read": len(timelines.watches),
        "timelines_skipped": len(timelines.skipped),
        "window_s": window_s,
        "tz": tz,
        "columns": export.columns,
        "format": export.kind,
        "encoding": export.encoding,
    }
    return MatchResult(summary, con, export.malformed, reports.skipped, timelines.skipped)


# Up to this many reports per agent key, a hash join on the key with the window as a range
# condition (every report in the window compared) costs ~0.04 s where the two ASOF joins cost ~0.3 s
# (1M rows, 10,000 reports); beyond it, e.g. a year of daily reports per agent, ASOF scales better.
RANGE_JOIN_MAX_PER_KEY = 16


def _by_time_sql(con: Any, window_us: int) -> str:
    """CTEs ending in `by_time(n, run_id, d)`: each failure's nearest report of the same agent
    within the window, before or after (either strategy finds the same nearest report)."""
    (most,) = con.execute(
        "SELECT max(c) FROM (SELECT count(*) AS c FROM rkeys GROUP BY key)"
    ).fetchone()
    if (most or 0) <= RANGE_JOIN_MAX_PER_KEY:
        return f"""by_time AS (
          SELECT f.n, arg_min(r.run_id, abs(r.t - f.ts_us)) AS run_id,
                 arg_min(r.t - f.ts_us, abs(r.t - f.ts_us)) AS d
          FROM fkeys f JOIN rkeys r
            ON f.key = r.key AND r.t BETWEEN f.ts_us - {window_us} AND f.ts_us + {window_us}
          GROUP BY f.n)"""
    return f"""before AS (
          SELECT f.n, r.run_id, r.t - f.ts_us AS d FROM fkeys f
          ASOF JOIN rkeys r ON f.key = r.key AND f.ts_us >= r.t),
        after AS (
          SELECT f.n, r.run_id, r.t - f.ts_us AS d FROM fkeys f
          ASOF JOIN rkeys r ON f.key = r.key AND f.ts_us <= r.t),
        by_time AS (
          SELECT n, arg_min(run_id, abs(d)) AS run_id, arg_min(d, abs(d)) AS d
          FROM (SELECT * FROM before UNION ALL SELECT * FROM after)
          WHERE abs(d) <= {window_us} GROUP BY n)"""


def _rejected_table(con: Any, export: log_export.LogExport) -> bool:
    """Line numbers: an accepted row's index plus the export's first data line, plus the lines
    the CSV reader rejected before it (`log_export.rows_before_rejected`, joined ASOF): table
    `rejected_before`, when there are any."""
    rejected = export.rejected_lines
    if rejected:
        con.execute(
            "CREATE OR REPLACE TABLE rejected_before AS SELECT k, max(before) AS before "
            "FROM (SELECT unnest(?)::BIGINT AS k, unnest(?)::BIGINT AS before) GROUP BY k",
            [
                log_export.rows_before_rejected(export.first_line, rejected),
                list(range(1, len(rejected) + 1)),
            ],
        ).fetchall()
    return bool(rejected)
