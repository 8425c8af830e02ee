"""SQL that reads an export's time column into UTC epoch microseconds, whatever its format."""

from __future__ import annotations

from typing import TYPE_CHECKING

from diag.logs.export_dialect import SAMPLE_ROWS

if TYPE_CHECKING:
    import duckdb

# Naive formats tried after ISO 8601; day-first, as UK/EU platform exports write dates.
NAIVE_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S.%f",
    "%d/%m/%Y %H:%M",
    "%d-%m-%Y %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%Y/%m/%d %H:%M:%S",
)


def sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _naive(ts_sql: str, tz: str) -> str:
    if tz.upper() in ("UTC", "ETC/UTC", "Z"):
        return f"epoch_us({ts_sql})"
    return f"epoch_us(timezone({sql_str(tz)}, {ts_sql}))"


def _strategies(t: str, tz: str) -> list[str]:
    """SQL parsing the VARCHAR `t` into UTC epoch µs, one way each (NULL when it does not fit)."""
    return [
        f"""CASE WHEN regexp_full_match({t}, '-?[0-9]+(\\.[0-9]+)?') THEN
              CASE WHEN abs(try_cast({t} AS DOUBLE)) >= 1e11   -- epoch milliseconds
                   THEN try_cast(try_cast({t} AS DOUBLE) * 1000 AS BIGINT)
                   ELSE try_cast(try_cast({t} AS DOUBLE) * 1000000 AS BIGINT) END END""",
        f"""CASE WHEN regexp_matches({t}, '(Z|[+-][0-9][0-9]:?[0-9][0-9])$')
              THEN epoch_us(try_cast({t} AS TIMESTAMPTZ)) END""",
        _naive(f"try_cast({t} AS TIMESTAMP)", tz),
        *(_naive(f"try_strptime({t}, {sql_str(f)})", tz) for f in NAIVE_FORMATS),
    ]


def time_expression(column: str, tz: str, first: int | None = None) -> str:
    """SQL turning a VARCHAR time into UTC epoch µs (NULL when unreadable); `first`: the
    strategy the sample fits, tried before the others (COALESCE only evaluates what it needs)."""
    ways = _strategies(f"trim({column})", tz)
    if first is not None:  # the sample's format, on the untrimmed value: the common case, fast
        ways.insert(0, _strategies(column, tz)[first])
    return "coalesce(" + ", ".join(ways) + ")"


def fitting_strategy(
    con: duckdb.DuckDBPyConnection, table: str, column: str, tz: str
) -> int | None:
    """Exports use one time format throughout: find it on a sample, so each row tries it first."""
    ways = _strategies(f"trim({column})", tz)
    counts = con.execute(
        "SELECT count(*), "
        + ", ".join(f"count({w})" for w in ways)
        + f" FROM (SELECT * FROM {table} WHERE {column} IS NOT NULL LIMIT {SAMPLE_ROWS})"
    ).fetchall()[0]
    total, fits = counts[0], counts[1:]
    best = max(range(len(fits)), key=lambda i: fits[i])
    return best if total and fits[best] else None


def typed_time(strategy: int | None, column: str, tz: str) -> tuple[str, str, str]:
    """(the CSV reader's type for the time column, its extra options, SQL of its epoch µs) for
    a sniffed strategy; VARCHAR and the general expression when no single format fits."""
    if strategy is None:
        return "VARCHAR", "", time_expression(column, tz)
    if strategy == 0:
        return (
            "DOUBLE",
            "",
            # TRY_CAST: an epoch beyond BIGINT microseconds is an unreadable time, not an error.
            f"TRY_CAST(CASE WHEN abs({column}) >= 1e11 THEN {column} * 1000 "
            f"ELSE {column} * 1000000 END AS BIGINT)",
        )
    if strategy == 1:
        return "TIMESTAMPTZ", "", f"epoch_us({column})"
    fmt = "" if strategy == 2 else f", timestampformat={sql_str(NAIVE_FORMATS[strategy - 3])}"
    return "TIMESTAMP", fmt, _naive(column, tz)
