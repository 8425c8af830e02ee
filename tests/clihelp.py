"""One CLI test helper: run sipdiag in-process or as a real process; get code, output, JSON."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diag.cli import run_cli
from diag.environment import Environment

REPO = Path(__file__).resolve().parent.parent


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def check(self, check_id: str) -> dict[str, Any]:
        """The JSON report's entry for one check."""
        found: dict[str, Any] = next(c for c in self.json["checks"] if c["id"] == check_id)
        return found

    def causes(self) -> list[str]:
        """The cause IDs of the JSON report's findings, in the report's order."""
        return [f["cause"] for f in self.json["findings"]]

    def finding(self, cause: str) -> dict[str, Any]:
        found: dict[str, Any] = next(f for f in self.json["findings"] if f["cause"] == cause)
        return found

    def saved_report(self) -> dict[str, Any]:
        """The JSON report the run saved under the user data directory."""
        for line in self.err.splitlines():
            if line.startswith("sipdiag: report saved to "):
                loaded: dict[str, Any] = json.loads(
                    Path(line.removeprefix("sipdiag: report saved to ")).read_text()
                )
                return loaded
        raise AssertionError(f"no saved report announced on stderr:\n{self.err}")


class _Capture(io.StringIO):
    def isatty(self) -> bool:
        return False


def cli(
    *args: str,
    environ: Mapping[str, str] | None = None,
    registry: Sequence[Any] | None = None,
) -> CliResult:
    """In-process: fast, and lets tests inject their own check registry."""
    out, err = _Capture(), _Capture()
    env = Environment(
        stdout=out, stderr=err, environ=dict(environ or {}), stdin_isatty=False, registry=registry
    )
    # typer writes --help/--version to sys.stdout itself.
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli(list(args), env)
    return CliResult(code, out.getvalue(), err.getvalue())


def registered(*ids: str) -> list[Any]:
    """The registry's own Check records, so in-process runs test exactly what ships."""
    from checks import REGISTRY

    by_id = {c.id: c for c in REGISTRY}
    return [by_id[i] for i in ids]


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPDIAG_")}
    env.update(extra or {})
    return env


def cli_process(
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
    prefix: Sequence[str] = (),
) -> CliResult:
    """A real `python -m diag` process (signals, exit codes, stdout as a pipe)."""
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "diag", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=subprocess_env(env),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
