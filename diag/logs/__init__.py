"""The central-log side: a platform's log export and many saved reports, read into DuckDB.

`match` pairs each failure in an export with the nearest report (`log_export`, `report_set`,
`match`), `fleet` summarises many reports, `explain` says what a platform's status means.
Nothing here runs a check; the check pipeline is the rest of `diag/`.
"""
