"""`match` against timelines: a failure row at true time T is paired with the agent's state at T,
the watch's sample before and after it (ASOF joins both ways, within --window) and the events
between them, and gets a likely cause from a small rule table (below, data).

Needs match's tables `fkeys(n, ts_us, key)`, `failures`, `statuses`, and timeline_set's
`watches`, `samples`, `events`, plus `wkeys(key, w)`. Creates `tpaired`: per paired row the
watch, the `timeline` object the JSON output shows, the cause ID, the explanation and how far
the nearer sample is (`dist_us`). A view (of tables `tnear`, `tsaid`, `tbetween`): the
`timeline` objects are built only when an output shows them (JSON), not for CSV (0.13 s for
2·10^5 rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from diag.logs import timeline_set


class MatchResult(Protocol):
    """diag.logs.match.MatchResult as timeline_rows reads it (match imports this module)."""

    con: Any


MAX_EVENTS = 20  # a row lists at most this many events between its two samples


def _ev(path: str) -> str:
    """SQL: a field of the event's evidence on one line, cut to 60 characters."""
    raw = f"json_extract_string(evidence, '{path}')"
    text = f"nullif(trim(regexp_replace({raw}, '\\s+', ' ', 'g')), '')"
    return f"CASE WHEN length({text}) > 60 THEN left({text}, 59) || '…' ELSE {text} END"


def _num(path: str) -> str:
    """SQL: a number of the event's evidence as Python's `f"{x:g}"` writes it (2390, 4.3)."""
    return f"format('{{:g}}', try_cast(json_extract(evidence, '{path}') AS DOUBLE))"


_NAME = _ev("$.name")
_CODE = _num("$.code")
# What each event means for a failed offer: its group (a "down" event and the "up" event that ends
# it share one), whether it is the down one, its rank (1 first; state rules are rank 2), the
# cause ID it points at (None: no cause ID fits, the words say what happened) and its words.
# Cause IDs are those of diag/causes.py.
EVENT_RULES: list[tuple[str, str, bool, int, str | None, str]] = [
    ("audio_device_removed", "audio", True, 1, "audio.no_input_device",
     f"coalesce({_NAME}, 'audio device') || ' removed'"),
    ("audio_device_added", "audio", False, 9, None,
     f"coalesce({_NAME}, 'audio device') || ' added'"),
    ("audio_default_changed", "audio_default", False, 9, None,
     f"'default ' || coalesce(replace({_ev('$.kind')}, 'default_', ''), 'device') "
     f"|| ' changed to ' || coalesce({_ev('$.after')}, 'none')"),
    ("registration_lost", "registration", True, 1, "sip.not_registered",
     f"'registration lost' || coalesce(' (' || {_CODE} || ')', '')"),
    ("registration_refused", "registration", True, 1, "sip.not_registered",
     f"'registration refused' || coalesce(' (' || {_CODE} || ')', '')"),
    ("registration_recovered", "registration", False, 9, None, "'registered again'"),
    ("inbound_lost", "inbound", True, 1, "network.inbound_blocked",
     "'requests from the platform stopped arriving'"),
    ("inbound_recovered", "inbound", False, 9, None, "'arriving again'"),
    ("softphone_stopped", "softphone", True, 1, "host.softphone_not_running",
     "'softphone stopped'"),
    ("softphone_started", "softphone", False, 9, None, "'softphone started'"),
    ("quality_below_threshold", "quality", True, 1, "network.poor_quality",
     f"'call quality below threshold' || coalesce(' (MOS ' || {_num('$.mos')} || ')', '')"),
    ("quality_recovered", "quality", False, 9, None, "'quality recovered'"),
    ("sleep_resume", "sleep", True, 3, None,
     f"'the machine was asleep' || coalesce(' for ' || {_num('$.slept_s')} || ' s', '') "
     "|| ', woke'"),
    ("vpn_up", "vpn", True, 4, "host.vpn_active", f"'VPN ' || coalesce({_NAME}, '') || ' up'"),
    ("vpn_down", "vpn", False, 9, None, f"'VPN ' || coalesce({_NAME}, '') || ' down'"),
    ("interface_down", "interface", True, 5, None,
     f"'network interface ' || coalesce({_NAME}, '') || ' down'"),
    ("interface_up", "interface", False, 9, None,
     f"'network interface ' || coalesce({_NAME}, '') || ' up'"),
    ("address_changed", "address", True, 5, None,
     f"'address of ' || coalesce({_NAME}, 'an interface') || ' changed'"),
    ("route_changed", "route", True, 5, None,
     f"'default route changed from ' || coalesce({_ev('$.before')}, '?') || ' to ' "
     f"|| coalesce({_ev('$.after')}, '?')"),
    ("public_mapping_changed", "mapping", True, 5, None,
     f"'public address changed from ' || coalesce({_ev('$.before')}, '?') || ' to ' "
     f"|| coalesce({_ev('$.after')}, '?')"),
]  # fmt: skip
# A refused registration names the refusal's cause.
_REFUSED = f"""CASE WHEN event = 'registration_refused' THEN CASE {_CODE}
    WHEN '403' THEN 'sip.forbidden' WHEN '404' THEN 'sip.not_found'
    WHEN '401' THEN 'sip.credentials_rejected' WHEN '407' THEN 'sip.credentials_rejected'
    ELSE 'sip.not_registered' END END"""
# A state the sample before the row (else after it) measured false, in this order: its group,
# cause ID and words (rank 2, after a down event between the samples).
STATE_RULES: list[tuple[str, str, str, str]] = [
    ("devices_present", "audio", "audio.no_input_device", "no audio device"),
    ("registered", "registration", "sip.not_registered", "not registered"),
    ("inbound_reachable", "inbound", "network.inbound_blocked",
     "requests from the platform not arriving"),
    ("softphone_running", "softphone", "host.softphone_not_running", "softphone not running"),
    ("quality_ok", "quality", "network.poor_quality", "call quality below threshold"),
]  # fmt: skip
STATE_FIELDS = (
    "registered", "inbound_reachable", "quality_ok", "devices_present", "softphone_running",
    "public_address", "clock_offset_ms",
)  # fmt: skip


def _iso(us: str) -> str:
    return f"strftime(make_timestamp({us}), '%Y-%m-%dT%H:%M:%S.%gZ')"


def _clock(us: str, row_us: str) -> str:
    """SQL: `us` as HH:MM:SS, with the date when it is not the row's day."""
    day = 86_400_000_000
    return (
        f"CASE WHEN {us} // {day} = {row_us} // {day} "
        f"THEN strftime(make_timestamp({us}), '%H:%M:%S') "
        f"ELSE strftime(make_timestamp({us}), '%Y-%m-%d %H:%M:%S') END"
    )


# SQL: an event's words, from its `event` and `evidence` (JSON text) columns. Worked out only
# for the events a row picks (tchosen, tspan), not for every event of every timeline.
WORDS = (
    "CASE event "
    + " ".join(f"WHEN '{e}' THEN {w}" for e, _, _, _, _, w in EVENT_RULES)
    + " ELSE event END"
)


def _rules_table(con: Any) -> None:
    con.execute(
        "CREATE OR REPLACE TABLE event_rules AS SELECT unnest(?::VARCHAR[]) AS event, "
        "unnest(?::VARCHAR[]) AS grp, unnest(?::BOOLEAN[]) AS down, unnest(?::INTEGER[]) AS rank, "
        "unnest(?::VARCHAR[]) AS cause",
        [[r[i] for r in EVENT_RULES] for i in range(5)],
    ).fetchall()
    con.execute(
        f"""CREATE OR REPLACE TABLE tevents AS
        SELECT e.w, e.true_us, e.event, e.evidence, r.grp, coalesce(r.down, false) AS down,
               coalesce(r.rank, 9) AS rank, coalesce({_REFUSED}, r.cause) AS cause
        FROM events e LEFT JOIN event_rules r USING (event)"""
    ).fetchall()


def load(
    con: Any, found: timeline_set.TimelineFiles, window_us: int, keys_sql: Callable[[str], str]
) -> int:
    """timeline_set's tables for the watches of agents with failure rows (table `fkeys`), only
    their files that come near those rows in time; and `wkeys`: every watch under each key that
    names its agent (`keys_sql`: match's normalisation of a name into its keys, SQL)."""
    watches = list(found.watches.values())
    con.execute(
        "CREATE OR REPLACE TABLE watch_names AS SELECT unnest(?::VARCHAR[]) AS watch_id, "
        "unnest(?::VARCHAR[]) AS agent_id, unnest(?::VARCHAR[]) AS sip_uri, "
        "unnest(?::VARCHAR[][]) AS numbers, unnest(?::BIGINT[]) AS bucket_us",
        [
            [getattr(w, f) for w in watches]
            for f in ("watch_id", "agent_id", "sip_uri", "numbers", "bucket_us")
        ],
    ).fetchall()
    con.execute(
        f"""CREATE OR REPLACE TABLE watch_fkeys AS
        WITH k AS (
          SELECT DISTINCT unnest({keys_sql("v")}) AS key, watch_id FROM (
            SELECT agent_id AS v, watch_id FROM watch_names
            UNION ALL SELECT sip_uri, watch_id FROM watch_names
            UNION ALL SELECT unnest(numbers), watch_id FROM watch_names))
        SELECT k.watch_id, f.ts_us FROM fkeys f JOIN k USING (key)"""
    ).fetchall()
    ranges = {
        watch_id: (int(first), int(last))
        for watch_id, first, last in con.execute(
            "SELECT watch_id, min(ts_us), max(ts_us) FROM watch_fkeys GROUP BY watch_id"
        ).fetchall()
    }
    # The time buckets (the watch's) with rows and those next to them: timeline_set.load keeps
    # only the samples an ASOF join from the rows can reach.
    con.execute(
        """CREATE OR REPLACE TABLE watch_near AS
        SELECT watch_id, bucket, bool_or(d = 0) AS here, bool_or(d = -1) AS before_row,
               bool_or(d = 1) AS after_row
        FROM (SELECT watch_id, b + d AS bucket, d
              FROM (SELECT DISTINCT f.watch_id, f.ts_us // n.bucket_us AS b
                    FROM watch_fkeys f JOIN watch_names n USING (watch_id)),
                   (VALUES (-1), (0), (1)) t(d))
        GROUP BY ALL"""
    ).fetchall()
    # A timeline's times are the agent's clock: an hour beyond the window covers its offset.
    files = timeline_set.needed_files(found, ranges, window_us + 3_600_000_000)
    loaded = timeline_set.load(con, found, set(ranges), files, "watch_near")
    for table in ("watch_fkeys", "watch_near"):
        con.execute(f"DROP TABLE {table}").fetchall()
    con.execute(
        f"""CREATE OR REPLACE TABLE wkeys AS
        SELECT DISTINCT k AS key, w FROM (
          SELECT unnest({keys_sql("v")}) AS k, w FROM (
            SELECT agent_id AS v, w FROM watches
            UNION ALL SELECT sip_uri, w FROM watches
            UNION ALL SELECT unnest(numbers), w FROM watches))
        WHERE k IS NOT NULL AND k <> ''"""
    ).fetchall()
    return loaded


def pair(con: Any, window_us: int) -> int:
    """Table `tpaired` (above); how many rows were paired with a timeline."""
    _rules_table(con)
    state = ", ".join(f"'{f}': s.{f}" for f in STATE_FIELDS)

    def state_rule(state: str, at: str) -> str:
        return (
            "CASE "
            + " ".join(
                f"WHEN NOT {state}.{f} THEN {{'grp': '{g}', 'cause': '{c}', 'words': '{w}', "
                f"'t': {at}}}"
                for f, g, c, w in STATE_RULES
            )
            + " END"
        )

    con.execute(
        f"""CREATE OR REPLACE TABLE tnear AS
        WITH cand AS (SELECT DISTINCT f.n, f.ts_us, k.w FROM fkeys f JOIN wkeys k USING (key)),
        b AS (SELECT c.n, c.w, c.ts_us, s.true_us AS b_us, {{{state}}} AS b_state
              FROM cand c ASOF LEFT JOIN samples s ON c.w = s.w AND c.ts_us >= s.true_us),
        a AS (SELECT c.n, c.w, s.true_us AS a_us, {{{state}}} AS a_state
              FROM cand c ASOF LEFT JOIN samples s ON c.w = s.w AND c.ts_us <= s.true_us),
        near AS (
          SELECT b.n, b.w, b.ts_us,
                 CASE WHEN b.ts_us - b.b_us <= {window_us} THEN b.b_us END AS b_us,
                 CASE WHEN b.ts_us - b.b_us <= {window_us} THEN b.b_state END AS b_state,
                 CASE WHEN a.a_us - b.ts_us <= {window_us} THEN a.a_us END AS a_us,
                 CASE WHEN a.a_us - b.ts_us <= {window_us} THEN a.a_state END AS a_state
          FROM b JOIN a USING (n, w)),
        tolerated AS (  -- with a sample on one side only: the row is near the watch's ends
          SELECT near.*, 2 * coalesce(interval_s, 60) * 1e6 AS tol FROM near JOIN watches USING (w))
        SELECT * EXCLUDE (tol), least(ts_us - b_us, a_us - ts_us) AS dist_us FROM tolerated
        WHERE (b_us IS NOT NULL AND a_us IS NOT NULL) OR ts_us - b_us <= tol OR a_us - ts_us <= tol
        QUALIFY row_number() OVER (PARTITION BY n ORDER BY dist_us, w) = 1"""
    ).fetchall()
    # The events between the two samples (or within the window on a side without one).
    con.execute(
        f"""CREATE OR REPLACE TABLE tbetween AS
        SELECT p.n, p.ts_us, e.* EXCLUDE (w) FROM tnear p JOIN tevents e
          ON e.w = p.w AND e.true_us BETWEEN coalesce(p.b_us, p.ts_us - {window_us})
                                        AND coalesce(p.a_us, p.ts_us + {window_us})"""
    ).fetchall()
    # The chosen reason: a down event between the samples (rank 1), else a state the sample
    # before, else the one after, measured false (rank 2), else sleep (3), a VPN (4), the
    # network (5); of one rank, events up to the row first (an event a sample detected carries
    # that sample's time, after the change), then the nearest.
    con.execute(
        f"""CREATE OR REPLACE TABLE tchosen AS
        WITH ev AS (
          SELECT n, true_us, grp, rank, cause, {WORDS} AS words FROM tbetween WHERE down
          QUALIFY row_number() OVER (
            PARTITION BY n ORDER BY rank, true_us > ts_us, abs(true_us - ts_us)) = 1),
        st_rule AS (
          SELECT n, w, ts_us, b_us, a_us,
                 coalesce({state_rule("b_state", "b_us")}, {state_rule("a_state", "a_us")}) AS r
          FROM tnear)
        SELECT s.n, s.w, s.ts_us, s.b_us, s.a_us,
               CASE WHEN by_event THEN ev.grp ELSE s.r.grp END AS grp,
               CASE WHEN by_event THEN ev.cause ELSE s.r.cause END AS cause,
               CASE WHEN by_event THEN ev.true_us END AS began_us,
               CASE WHEN by_event THEN ev.words END AS began,
               CASE WHEN NOT by_event THEN s.r.words END AS state_words,
               CASE WHEN NOT by_event THEN s.r.t END AS st_us
        FROM st_rule s LEFT JOIN ev USING (n),
             LATERAL (SELECT coalesce(ev.rank = 1, false) OR s.r IS NULL AS by_event)"""
    ).fetchall()
    # For a reason found in the samples: the down event that began it (before the row), and for
    # any: the up event that ended it (after the row), both within the window.
    con.execute(
        f"""CREATE OR REPLACE TABLE tspan AS
        WITH began AS (
          SELECT c.n, arg_max(e.true_us, e.true_us) AS t, arg_max({WORDS}, e.true_us) AS words
          FROM tchosen c JOIN tevents e ON e.w = c.w AND e.grp = c.grp AND e.down
            AND e.true_us BETWEEN c.ts_us - {window_us} AND c.ts_us
          WHERE c.began IS NULL AND c.grp IS NOT NULL GROUP BY c.n),
        ended AS (
          SELECT c.n, arg_min(e.true_us, e.true_us) AS t, arg_min({WORDS}, e.true_us) AS words
          FROM tchosen c JOIN tevents e ON e.w = c.w AND e.grp = c.grp AND NOT e.down
            AND e.true_us BETWEEN greatest(c.ts_us, c.began_us) AND c.ts_us + {window_us}
          WHERE c.grp IS NOT NULL GROUP BY c.n)
        SELECT c.n, coalesce(c.began_us, b.t) AS began_us, coalesce(c.began, b.words) AS began,
               d.t AS ended_us, CASE WHEN c.grp = 'audio' THEN 'back' ELSE d.words END AS ended
        FROM tchosen c LEFT JOIN began b USING (n) LEFT JOIN ended d USING (n)"""
    ).fetchall()
    parts = f"""list_transform(list_sort(list_filter([
        {{'t': x.began_us, 'text': x.began}},
        {{'t': c.st_us, 'text': c.state_words || ' (sample)'}},
        {{'t': x.ended_us, 'text': x.ended}}], lambda p: p.text IS NOT NULL AND p.t IS NOT NULL)),
        lambda p: p.text || ' ' || {_clock("p.t", "c.ts_us")})"""
    samples_said = f"""'the samples at ' || array_to_string(list_filter(
        [{_clock("c.b_us", "c.ts_us")}, {_clock("c.a_us", "c.ts_us")}], lambda x: x IS NOT NULL),
        ' and ') || ' show nothing wrong'"""
    short_status = (
        "coalesce(nullif(regexp_extract(f.status, '(?:SIP |^)([1-6][0-9][0-9])\\b', 1), ''), "
        "f.status)"
    )
    con.execute(
        f"""CREATE OR REPLACE TABLE tsaid AS
        WITH said AS (
          SELECT c.n, c.cause, {parts} AS parts, {samples_said} AS nothing
          FROM tchosen c JOIN tspan x USING (n))
        SELECT n, s.cause,
               {short_status} || ' at ' || strftime(make_timestamp(p.ts_us), '%H:%M:%S')
               || ' UTC — ' || CASE WHEN len(s.parts) > 0 THEN array_to_string(s.parts, ', ')
                                    ELSE s.nothing END
               || ' → ' || coalesce(s.cause, CASE WHEN len(s.parts) > 0 THEN 'no cause ID'
                                                  ELSE 'no cause in the timeline' END)
                 AS explanation
        FROM tnear p JOIN failures f USING (n) JOIN said s USING (n)"""
    ).fetchall()
    con.execute(
        f"""CREATE OR REPLACE VIEW tpaired AS
        SELECT n, w.watch_id, p.dist_us, t.cause, t.explanation,
               {{'watch_id': w.watch_id,
                 'before': CASE WHEN p.b_us IS NOT NULL
                                THEN {{'t': {_iso("p.b_us")}, 'state': p.b_state}} END,
                 'after': CASE WHEN p.a_us IS NOT NULL
                               THEN {{'t': {_iso("p.a_us")}, 'state': p.a_state}} END,
                 'events': coalesce(ev.events, []),
                 'likely_cause': t.cause, 'explanation': t.explanation}} AS timeline
        FROM tnear p JOIN watches w USING (w) JOIN tsaid t USING (n)
        LEFT JOIN (SELECT n, list({{'t': {_iso("true_us")}, 'event': event,
                                    'evidence': evidence::JSON}} ORDER BY true_us, event)
                                  [1:{MAX_EVENTS}] AS events
                   FROM tbetween GROUP BY n) ev USING (n)"""
    ).fetchall()
    for table in ("tchosen", "tspan"):
        con.execute(f"DROP TABLE {table}").fetchall()
    (count,) = con.execute("SELECT count(*) FROM tpaired").fetchone() or (0,)
    return int(count)


# match_rows' columns from `tpaired` joined as `tp` (report pairing `p`, statuses `s`): which
# evidence decides `likely_cause` ('report' or 'timeline'): a Call-ID match keeps its report; an
# agent's own action keeps the catalogue's words; else the nearer in time of the report and the
# timeline's nearer sample.
DECIDED_BY = """CASE
    WHEN p.matched_by = 'call_id' OR s.category = 'agent_action' THEN
      CASE WHEN p.run_id IS NOT NULL THEN 'report' END
    WHEN tp.n IS NOT NULL AND (p.run_id IS NULL OR tp.dist_us < abs(p.d)) THEN 'timeline'
    WHEN p.run_id IS NOT NULL THEN 'report'
  END"""
COLUMNS = (
    "tp.timeline AS timeline, tp.watch_id AS watch_id, tp.cause AS timeline_cause, "
    "tp.explanation AS timeline_explanation"
)
NO_COLUMNS = (
    "NULL::STRUCT(watch_id VARCHAR) AS timeline, NULL::VARCHAR AS watch_id, "
    "NULL::VARCHAR AS timeline_cause, NULL::VARCHAR AS timeline_explanation"
)


def timeline_rows(result: MatchResult, watch_id: str) -> list[dict[str, Any]]:
    """The failure rows paired with the watch `watch_id`, in time order, as dicts: `time` (RFC
    3339, UTC), `status`, `likely_cause` (the timeline's cause ID or None), `explanation`,
    `call_id` (or None). For the timeline report, which draws them on the watch's time line."""
    rows = result.con.execute(
        """SELECT time, status, timeline_cause, timeline_explanation, call_id
        FROM match_rows WHERE watch_id = ? ORDER BY time, line""",
        [watch_id],
    ).fetchall()
    return [
        {"time": t, "status": s, "likely_cause": c, "explanation": e, "call_id": i}
        for t, s, c, e, i in rows
    ]
