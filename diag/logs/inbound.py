"""What a report's `sip.inbound` and `net.idle` results say about offers to the agent, for `match`.

A 403 or No Answer row is about an offer the platform sent *to* the agent; these two checks are
the report's direct evidence on that leg: whether a request from the platform reached the
softphone at a given time, and after how long an idle period it no longer did. Each becomes one
line of evidence with its time (the report's clock corrected by its offset), e.g.
"requests from the platform did not reach this machine (sip.inbound: network.inbound_blocked, …)".
The same results name the Call-IDs of the INVITE that `--inbound-call` sent, so that `match` can
label the row the platform logged for that test call instead of taking it for a real failure.

They are read only from the reports a row needs them from (paired with a status they bear on, or
with a row by its Call-ID, or named by a row's text), after the pairing: reading them while every
report is parsed cost the whole run ~0.15 s on 10,000 reports, as that parse runs beside the
export's scan. Python finds the two check objects in each such file (one pass of a regular
expression over sipdiag's own layout, ~5 µs for a 12 KB report) and hands them to DuckDB, which
reads the fields below (a field of another type reads as NULL, and any JSON value where text is
expected as its JSON text, cut to MAX_TEXT characters like every text shown) and writes the lines
in SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from diag.logs import report_set

INBOUND, IDLE = "sip.inbound", "net.idle"
LABEL = "sipdiag inbound test"  # what match calls a row of sipdiag's own test call
MAX_TEXT = 80  # a peer's User-Agent or reason phrase, or a summary, is cut to this many characters

# A check object as sipdiag writes reports: at four spaces, `id` its first key.
_CHECK_START = re.compile(rb'\n    \{\n      "id": "(sip\.inbound|net\.idle)",')


# What match reads of each, and how DuckDB types it: a leaf is a DuckDB type, a dict a STRUCT, a
# one-element list a LIST of that. DuckDB skips the other fields. (Copying only these in Python
# cost more than DuckDB's skipping: ~7 µs a report.)
Fields = Mapping[str, Any]
INBOUND_FIELDS: Fields = {
    "status": "VARCHAR",
    "summary": "VARCHAR",
    "details": {
        "mode": "VARCHAR", "method": "VARCHAR", "transport": "VARCHAR", "call_id": "VARCHAR",
        "call_ids": ["VARCHAR"], "sent_at": "VARCHAR",
        "final": {"code": "BIGINT", "reason": "VARCHAR", "user_agent": "VARCHAR"},
        "provisional": ["BIGINT"], "cancelled": "BOOLEAN", "arrived": {"after_ms": "DOUBLE"},
        "problem": "VARCHAR",
    },
}  # fmt: skip
IDLE_FIELDS: Fields = {
    "status": "VARCHAR",
    "details": {
        "periods": [{"seconds": "DOUBLE", "transport": "VARCHAR", "arrived": "BOOLEAN",
                     "closed_by_network": "BOOLEAN", "checked_at": "VARCHAR"}],
        "registration_interval": "DOUBLE",
        "stun": {"lifetime_at_least": "DOUBLE", "lifetime_at_most": "DOUBLE",
                 "mapping_changed": "BOOLEAN"},
        "problem": "VARCHAR",
    },
}  # fmt: skip
FIELDS = {INBOUND: INBOUND_FIELDS, IDLE: IDLE_FIELDS}


def duckdb_type(spec: Any) -> str:
    """The DuckDB type of a field spec (INBOUND_FIELDS, IDLE_FIELDS)."""
    if isinstance(spec, list):
        return duckdb_type(spec[0]) + "[]"
    if isinstance(spec, Mapping):
        return "STRUCT(" + ", ".join(f"{k} {duckdb_type(v)}" for k, v in spec.items()) + ")"
    return str(spec)


def check_objects(
    raw: bytes, loads: Callable[[bytes], Any], dumps: Callable[[Any], bytes]
) -> dict[str, bytes]:
    """The `sip.inbound` and `net.idle` results in a report file's bytes, by check id, as compact
    JSON. In sipdiag's own layout they are found without parsing the rest; a file laid out
    otherwise is parsed whole. A damaged one is left out (and costs nothing else)."""
    found: dict[str, Any] = {}
    for m in _CHECK_START.finditer(raw):
        end = raw.find(b"\n    }", m.end())  # nested values are indented deeper
        if end < 0:
            break
        try:
            parsed = loads(raw[m.start() + 1 : end + 6])
        except ValueError:
            continue
        if isinstance(parsed, dict):
            found.setdefault(m.group(1).decode(), parsed)
    if not found and b'\n  "checks": [' not in raw:  # not sipdiag's layout
        try:
            doc = loads(raw)
        except ValueError:
            doc = None
        checks = doc.get("checks") if isinstance(doc, dict) else None
        for c in checks if isinstance(checks, list) else []:
            if isinstance(c, dict) and c.get("id") in FIELDS:
                found.setdefault(c["id"], c)
    return {cid: dumps(c) for cid, c in found.items()}


def load_probes(con: Any) -> None:
    """Table `probes(run_id, inbound, idle, invite_call_ids)` (match's tables `pairs`, `paired`,
    `statuses`, `failures` and `reports` made) for the reports whose two results a row needs:
    paired with a status they bear on, or with a row by its Call-ID, or named (their run id) in
    a row's text. The Call-IDs are those of sipdiag's own test INVITE, when sip.inbound sent one.
    A file that can no longer be read has none."""
    wanted = con.execute(
        f"""WITH wanted AS (
          SELECT run_id FROM pairs JOIN statuses USING (status) WHERE statuses.inbound
          UNION SELECT run_id FROM paired WHERE matched_by = 'call_id'
          UNION SELECT unnest(regexp_extract_all(marks, '{_UUID}')) FROM failures
                WHERE marks IS NOT NULL)
        SELECT run_id, min(path) FROM reports WHERE run_id IN (SELECT run_id FROM wanted)
        GROUP BY run_id ORDER BY 2"""
    ).fetchall()
    _load(con, wanted)


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # a run id


def _load(con: Any, wanted: Sequence[tuple[str, str]]) -> None:
    """Table `probes` for the reports `wanted` ((run_id, path))."""
    loads = report_set.json_loads()
    rows: dict[str, list[Any]] = {"run_id": [], INBOUND: [], IDLE: []}
    for run_id, path in wanted:
        try:
            found = check_objects(report_set.read_bytes(path), loads, report_set.json_dumps)
        except OSError:
            continue
        if found:
            rows["run_id"].append(run_id)
            for cid in (INBOUND, IDLE):
                rows[cid].append(found[cid].decode() if cid in found else None)
    con.execute(
        f"""CREATE OR REPLACE TABLE probes AS
        SELECT run_id, inbound, idle, {INVITE_CALL_IDS} AS invite_call_ids FROM (
          SELECT run_id, try_cast(i::JSON AS {INBOUND_TYPE}) AS inbound,
                 try_cast(d::JSON AS {IDLE_TYPE}) AS idle
          FROM (SELECT unnest(?::VARCHAR[]) AS run_id, unnest(?::VARCHAR[]) AS i,
                       unnest(?::VARCHAR[]) AS d))""",
        [rows["run_id"], rows[INBOUND], rows[IDLE]],
    ).fetchall()


# How DuckDB reads them (table `probes`).
INBOUND_TYPE = duckdb_type(INBOUND_FIELDS)
IDLE_TYPE = duckdb_type(IDLE_FIELDS)
# SQL over `inbound`: the Call-IDs of sipdiag's own test INVITE, when it sent one.
INVITE_CALL_IDS = """CASE WHEN inbound.details.method = 'INVITE' THEN list_distinct(list_filter(
    list_prepend(inbound.details.call_id, coalesce(inbound.details.call_ids, [])),
    lambda x: coalesce(x, '') <> '')) ELSE [] END"""


def _g(expr: str) -> str:
    """SQL: a number as Python's `f"{x:g}"` writes it (90, 12.5)."""
    return f"format('{{:g}}', CAST({expr} AS DOUBLE))"


def _one_line(expr: str) -> str:
    """SQL: text from outside on one line (NULL when empty); `_cut` then bounds its length."""
    return f"nullif(trim(regexp_replace({expr}, '\\s+', ' ', 'g')), '')"


def _cut(column: str) -> str:
    """SQL: a one-line text column cut to MAX_TEXT characters."""
    cut = f"left({column}, {MAX_TEXT - 1}) || '…'"
    return f"CASE WHEN length({column}) > {MAX_TEXT} THEN {cut} ELSE {column} END"


def _at(when: str) -> str:
    """SQL: the true time (µs) of a report's ISO time `when`, else of the report's start."""
    return f"coalesce(epoch_us(try_cast({when} AS TIMESTAMPTZ)) - offset_ms * 1000, true_us)"


# Over the columns of `inbound_texts` below.
_HOW = f"coalesce({_cut('method')}, 'OPTIONS') || coalesce(' over ' || {_cut('transport')}, '')"
_ANSWER = f"CAST(code AS VARCHAR) || coalesce(' ' || {_cut('reason')}, '')"
_INBOUND_LINE = f"""CASE
  WHEN problem = 'network.inbound_blocked' THEN
    'requests from the platform did not reach this machine (sip.inbound: '
    || 'network.inbound_blocked, ' || {_HOW} || ', '
    || coalesce('the platform answered ' || {_ANSWER}, 'no answer') || ')'
  WHEN status = 'pass' AND mode = 'own_binding' THEN
    'a request from the platform reached this machine (sip.inbound: ' || {_HOW}
    || coalesce(' after ' || {_g("after_ms")} || ' ms', '') || ')'
  WHEN status = 'pass' THEN
    'a request from the platform reached the softphone (sip.inbound: ' || {_HOW}
    || CASE WHEN cancelled AND (list_contains(provisional, 180) OR list_contains(provisional, 183))
            THEN ', it rang and sipdiag cancelled it'
            ELSE coalesce(', ' || {_ANSWER} || coalesce(' from ' || {_cut("ua")}, ''), '') END
    || ')'
  WHEN status IN ('warn', 'fail') THEN
    'sip.inbound ' || status || ': ' || coalesce({_cut("summary")}, 'no summary')
END"""
_NAME = f"coalesce({_cut('name')}, '?')"
_IDLE_LINE = f"""CASE WHEN failed_s IS NOT NULL THEN
    CASE WHEN failed_closed THEN 'the network closed the ' || {_NAME} || ' connection after '
                                 || {_g("failed_s")} || ' s idle'
         ELSE 'inbound failed after ' || {_g("failed_s")} || ' s idle on ' || {_NAME} END
    || coalesce(' but still arrived after '
                || {_g("list_max(list_filter(oks, lambda x: x < failed_s))")} || ' s', '')
    || coalesce(' (' || nullif(array_to_string(list_filter(
         ['registration interval ' || {_g("regint")} || ' s',
          CASE WHEN is_short THEN 'net.idle: network.nat_binding_short' END],
         lambda x: x IS NOT NULL), ', '), '') || ')', '')
  ELSE 'inbound still arrived after ' || {_g("ok_max")} || ' s idle on ' || {_NAME} END"""
_STUN_SPAN = f"""CASE
  WHEN s.lifetime_at_least <> 0 AND s.lifetime_at_most IS NOT NULL THEN
    'between ' || {_g("s.lifetime_at_least")} || ' and ' || {_g("s.lifetime_at_most")} || ' s'
  WHEN s.lifetime_at_most IS NOT NULL THEN 'less than ' || {_g("s.lifetime_at_most")} || ' s'
  ELSE 'at least ' || {_g("s.lifetime_at_least")} || ' s' END"""


def evidence_table(con: Any) -> None:
    """Table `evidence(run_id, evidence)` for the reports paired with a status the two checks
    bear on (match's `statuses.inbound`)."""
    con.execute(
        evidence_sql("SELECT run_id FROM pairs JOIN statuses USING (status) WHERE statuses.inbound")
    ).fetchall()


def evidence_sql(needed: str) -> str:
    """SQL creating table `evidence(run_id, evidence)`: for each report whose run_id `needed`
    (a query) yields, its lines `[{t, what}]` (`t`: true time in µs, or NULL): sip.inbound's
    (unless it tested nothing: skip, error), then per transport net.idle tested (the shortest idle
    period after which inbound failed, and the longest shorter one after which it still arrived;
    else the longest it survived), then the UDP mapping lifetime STUN measured."""
    return f"""CREATE OR REPLACE TABLE evidence AS
    WITH r AS (  -- a report found twice (two files): the first path's, as for its findings
      SELECT run_id, inbound, idle, true_us, clock_offset_ms AS offset_ms
      FROM probes JOIN reports USING (run_id)
      JOIN (SELECT run_id, min(path) AS path FROM reports GROUP BY run_id) USING (run_id, path)
      WHERE run_id IN ({needed})),
    inbound_texts AS (
      SELECT run_id, true_us, offset_ms, i.status AS status, d.mode AS mode,
             d.problem AS problem, d.cancelled AS cancelled, d.provisional AS provisional,
             d.final.code AS code, d.arrived.after_ms AS after_ms, d.sent_at AS sent_at,
             {_one_line("d.method")} AS method, {_one_line("upper(d.transport)")} AS transport,
             {_one_line("d.final.reason")} AS reason, {_one_line("d.final.user_agent")} AS ua,
             {_one_line("i.summary")} AS summary
      FROM (SELECT run_id, true_us, offset_ms, inbound AS i, inbound.details AS d FROM r
            WHERE inbound IS NOT NULL)),
    inbound_lines AS (
      SELECT run_id, 0 AS pos, {_at("sent_at")} AS t, {_INBOUND_LINE} AS what
      FROM inbound_texts),
    periods AS (
      SELECT run_id, true_us, offset_ms, pos, p.transport AS tr, p.seconds AS s,
             p.arrived AS arrived, coalesce(p.closed_by_network, false) AS closed,
             p.checked_at AS checked_at, regint, {_one_line("upper(p.transport)")} AS name,
             coalesce(problem = 'network.nat_binding_short', false) AS is_short
      FROM (SELECT run_id, true_us, offset_ms, unnest(idle.details.periods) AS p,
                   generate_subscripts(idle.details.periods, 1) AS pos,
                   idle.details.registration_interval AS regint,
                   idle.details.problem AS problem FROM r)
      WHERE p.seconds IS NOT NULL),
    transports AS (
      SELECT run_id, tr, min(pos) AS pos, any_value(regint) AS regint, any_value(name) AS name,
             any_value(is_short) AS is_short, any_value(true_us) AS true_us,
             any_value(offset_ms) AS offset_ms,
             min(s) FILTER (arrived = false OR closed) AS failed_s,
             first(closed ORDER BY s, pos) FILTER (arrived = false OR closed) AS failed_closed,
             first(checked_at ORDER BY s, pos) FILTER (arrived = false OR closed) AS failed_at,
             list(s) FILTER (arrived) AS oks, max(s) FILTER (arrived) AS ok_max,
             last(checked_at ORDER BY s, pos) FILTER (arrived) AS ok_at
      FROM periods GROUP BY run_id, tr),
    idle_lines AS (
      SELECT run_id, pos, {_at("coalesce(failed_at, ok_at)")} AS t, {_IDLE_LINE} AS what
      FROM transports WHERE failed_s IS NOT NULL OR ok_max IS NOT NULL),
    stun_lines AS (
      SELECT run_id, 1e9 AS pos, NULL::BIGINT AS t,
             'the network''s UDP mapping lasted ' || {_STUN_SPAN} || ' (net.idle, STUN'
             || CASE WHEN s.mapping_changed THEN ', then the public address changed' ELSE '' END
             || ')' AS what
      FROM (SELECT run_id, idle.details.stun AS s FROM r)
      WHERE s.lifetime_at_least IS NOT NULL OR s.lifetime_at_most IS NOT NULL)
    SELECT run_id, list({{'t': t, 'what': what}} ORDER BY pos) FILTER (what IS NOT NULL)
             AS evidence
    FROM (SELECT * FROM inbound_lines UNION ALL SELECT * FROM idle_lines
          UNION ALL SELECT * FROM stun_lines)
    GROUP BY run_id"""


# match's table `explained`, over a pair's `evidence`: its lines each with its time in UTC,
# `evidence_short` with the hour and minute, for rows of the same day (`evidence_day`, NULL when
# the times span days), else `evidence_long` with the date too.
_DAY_US = 86_400_000_000


def _evidence_line(fmt: str) -> str:
    return f"""CASE WHEN v.t IS NULL THEN '' ELSE 'at ' || strftime(make_timestamp(v.t), '{fmt}')
        || ' UTC, ' END || v.what"""


EVIDENCE_LINES = f"""
    list_transform(evidence, lambda v: {_evidence_line("%H:%M")}) AS evidence_short,
    list_transform(evidence, lambda v: {_evidence_line("%Y-%m-%d %H:%M")}) AS evidence_long,
    CASE WHEN len(list_distinct(list_transform(evidence, lambda v: v.t // {_DAY_US}))) = 1
         THEN list_distinct(list_transform(evidence, lambda v: v.t // {_DAY_US}))[1]
    END AS evidence_day"""


def evidence_column(any_evidence: bool) -> str:
    """match_rows' `evidence` (failure row `f`, explained pair `e`); a constant when no pair
    has any, which is cheaper."""
    if not any_evidence:
        return "[]::VARCHAR[] AS evidence"
    return f"""coalesce(CASE WHEN e.evidence_day = f.ts_us // {_DAY_US} THEN e.evidence_short
                            ELSE e.evidence_long END, []) AS evidence"""


# A row of sipdiag's own test call (`check --inbound-call`): its Call-ID is one of the INVITE's
# that a report's sip.inbound recorded, or a text column holds "sipdiag inbound test" or the run
# id of a report that sent one. `run_id`: that report, when known.
def tests_table(con: Any) -> int:
    """Table `inbound_tests(n, run_id)`: the failure rows of sipdiag's own test calls; how many."""
    con.execute(
        f"""CREATE OR REPLACE TABLE inbound_tests AS
        WITH invites AS (
          SELECT DISTINCT run_id, unnest(invite_call_ids) AS call_id FROM probes),
        by_call AS (
          SELECT f.n, min(i.run_id) AS run_id FROM failures f JOIN invites i USING (call_id)
          GROUP BY f.n),
        by_text AS (
          SELECT f.n, min(i.run_id) AS run_id
          FROM (SELECT n, marks FROM failures WHERE marks IS NOT NULL) f
          LEFT JOIN (SELECT DISTINCT run_id FROM invites) i ON contains(f.marks, i.run_id)
          WHERE i.run_id IS NOT NULL OR contains(lower(f.marks), '{LABEL}')
          GROUP BY f.n)
        SELECT n, coalesce(c.run_id, t.run_id) AS run_id
        FROM by_call c FULL JOIN by_text t USING (n)"""
    ).fetchall()
    (count,) = con.execute("SELECT count(*) FROM inbound_tests").fetchone() or (0,)
    return int(count)


_TEST_CALL = f"""'{LABEL}: the INVITE of `sipdiag check --inbound-call`'
    || coalesce(' in report ' || left(l.run_id, 8), '')
    || ', declined by sipdiag on purpose; not an offer to the agent that failed'"""


def labelled(tests: int, likely_cause: str) -> str:
    """match_rows' `likely_cause` (else `likely_cause`, SQL) and `label` columns, table
    `inbound_tests` joined as `l` when it has rows (the common case has none, and is cheaper
    without the join)."""
    if not tests:
        return f"{likely_cause} AS likely_cause, NULL::VARCHAR AS label"
    return (
        f"CASE WHEN l.n IS NULL THEN {likely_cause} ELSE {_TEST_CALL} END AS likely_cause, "
        f"CASE WHEN l.n IS NOT NULL THEN '{LABEL}' END AS label"
    )
