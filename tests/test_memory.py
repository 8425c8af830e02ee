"""Memory: the SIP worker and the CLI import only what they use (bench/bench_memory.py measures
the peak RSS of a full check's parent and worker; these pin the imports that decide it)."""

from __future__ import annotations

import json
import subprocess
import sys

# Libraries that cost megabytes each and that neither the worker nor a bare CLI start needs.
HEAVY = {
    "aioice", "cryptography", "dns", "duckdb", "jsonschema", "numpy", "phonenumbers", "psutil",
    "sounddevice", "sqlite3", "websockets",
}  # fmt: skip
WORKER_MODULES = {
    "checks", "checks.sip", "checks.sip.stack", "checks.sip.worker", "checks.wire",
    "checks.wire.sip", "checks.wire.text",  # the SIP codec makes wire text valid (stdlib only)
}  # fmt: skip


def loaded_after(statement: str) -> set[str]:
    code = f"{statement}\nimport json, sys; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_the_sip_worker_imports_no_probe_and_no_heavy_library() -> None:
    loaded = loaded_after("import checks.sip.worker")
    assert {m.split(".")[0] for m in loaded} & HEAVY == set()
    assert {m for m in loaded if m.startswith("checks")} == WORKER_MODULES
    assert not {"asyncio", "ssl", "typer"} & loaded


def test_importing_the_checks_package_builds_the_registry_only_when_asked() -> None:
    assert {m for m in loaded_after("import checks") if m.startswith("checks")} == {"checks"}
    loaded = loaded_after("import checks\nassert len(checks.REGISTRY) > 20")
    assert "checks.sip.register" in loaded


def test_the_cli_starts_without_heavy_libraries() -> None:
    assert {m.split(".")[0] for m in loaded_after("import diag.cli")} & HEAVY == set()
