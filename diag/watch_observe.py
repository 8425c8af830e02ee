"""What one watch sample saw (issue 18): the observation diag/watch_events.py compares, and the
fields of the timeline's ``sample`` line, read from the light set's check results.

Pure functions over ``{check id: CheckResult}``; they read each check's ``details`` by the keys
the checks write (diag/evidence.py for the SIP and STUN records). A check that did not run, was
skipped or broke (``error``, whose details are empty) gives None for its keys: unknown, and
events_between raises no event for unknown.

Choices a reader of the timeline needs to know:

- ``registered``: the registrar lists at least one binding for the agent that is not ours
  (sip.bindings: the softphone's; the watch's own binding, kept while no softphone is
  registered, does not count), from sip.register's Contact-less query. When the
  query was not answered at all (timeout, refused, no route, the name does not resolve), the
  agent counts as not registered (False, ``registration_code`` None, ``registration_reason``
  "no answer…"): the platform cannot reach a softphone whose path to the registrar is cut, and
  a watch must record that as ``registration_lost``. A registrar's refusal (401/403/404/407/5xx)
  is False with its code (``registration_refused`` or ``_lost``). None only when there is no
  evidence: the checks did not run, --no-register, no password, a TLS or local error, or the
  time budget ran out.
- ``inbound``: sip.inbound passed (True); it failed with network.inbound_blocked, or could not
  send because the registrar did not answer (False); None for any other skip or error.
- ``public_mapping``: the public IP address the first answering --stun server saw over UDP
  (without the port: every sample's STUN request leaves from a new ephemeral port, so the port
  changes each time with or without a NAT); sip.register's Via received address when no STUN
  server is configured.
- ``quality_ok``: net.quality crossed no threshold (its status is pass); ``quality_crossed``
  names the thresholds crossed otherwise.
- ``default_route``: the interface and local address of the route to the registrar, from
  net.route, which the light set must include for it (otherwise None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from diag import outcomes as o
from diag.evidence import register_details, stun_details
from diag.model import CheckResult, Finding, Status

EVIDENCE = frozenset({Status.PASS, Status.WARN, Status.FAIL})  # a verdict: details hold data
# A query that got nothing back from the registrar, and what the timeline says of it.
NO_ANSWER = {
    o.TIMEOUT: "no answer",
    o.REFUSED: "no answer (refused)",
    o.UNREACHABLE: "no answer (no route)",
    o.DNS_FAILURE: "no answer (the registrar's name does not resolve)",
}
INBOUND_BLOCKED = "network.inbound_blocked"


def _verdict(results: Mapping[str, CheckResult], check_id: str) -> CheckResult | None:
    """The check's result when it reached a verdict (pass, warn or fail), else None."""
    result = results.get(check_id)
    return result if result is not None and result.status in EVIDENCE else None


def _ip(address: str | None) -> str | None:
    """'203.0.113.7:40000' or '[2001:db8::1]:40000' -> the address alone."""
    if not address:
        return None
    return address.rsplit(":", 1)[0].strip("[]") if ":" in address else address


# ---- host and audio


def interfaces(results: Mapping[str, CheckResult]) -> dict[str, dict[str, Any]] | None:
    found = _verdict(results, "host.interfaces")
    if found is None or "interfaces" not in found.details:
        return None
    return {
        i["name"]: {"up": bool(i["is_up"]), "addresses": sorted(set(i["addresses"]))}
        for i in found.details["interfaces"]
    }


def vpn(results: Mapping[str, CheckResult]) -> list[str] | None:
    found = _verdict(results, "host.vpn")
    if found is None:
        return None
    return sorted(i["name"] for i in found.details.get("vpn_interfaces", []))


def default_route(results: Mapping[str, CheckResult]) -> dict[str, Any] | None:
    found = _verdict(results, "net.route")
    if found is None or "interface" not in found.details:
        return None
    return {"dev": found.details["interface"], "local_address": found.details.get("local_address")}


def audio(results: Mapping[str, CheckResult]) -> dict[str, Any] | None:
    found = _verdict(results, "audio.devices")
    if found is None or "devices" not in found.details:
        return None
    d = found.details

    def names(kind: str) -> list[str]:
        return sorted({x["name"] for x in d["devices"] if x.get(f"max_{kind}_channels", 0) > 0})

    def name(described: Mapping[str, Any] | None) -> str | None:
        return None if described is None else str(described["name"])

    server = d.get("sound_server")
    if server:  # PulseAudio/PipeWire: its sources and sinks are the real devices
        return {
            "inputs": sorted(server["sources"]),
            "outputs": sorted(server["sinks"]),
            "default_input": server.get("default_source"),
            "default_output": server.get("default_sink"),
        }
    return {
        "inputs": names("input"),
        "outputs": names("output"),
        "default_input": name(d.get("default_input")),
        "default_output": name(d.get("default_output")),
    }


def softphone_pids(results: Mapping[str, CheckResult]) -> list[int] | None:
    found = _verdict(results, "host.softphone")
    if found is None or "running" not in found.details:
        return None  # also when no softphone process is configured (skip)
    return sorted(int(p["pid"]) for p in found.details["running"])


# ---- SIP


def _queries(register: CheckResult) -> list[Mapping[str, Any]]:
    """sip.register's Contact-less queries: ``queries`` when it registered after them, else
    its ``attempts`` (checks/sip/bindings.py queries_of, read from the details)."""
    details = register_details(register.details)
    return list(details.get("queries") or details.get("attempts") or [])


def _unanswered(register: CheckResult | None) -> tuple[bool | None, int | None, str | None]:
    """(registered, code, reason) from a query the registrar did not accept: False with the
    registrar's refusal, False with no code when nothing came back, None without evidence."""
    queries = _queries(register) if register is not None else []
    if any(q.get("outcome") == o.OK for q in queries):
        return None, None, None  # accepted: the registrar answered; the caller reads that
    refused = next((q for q in queries if q.get("outcome") == o.REJECTED and q.get("code")), None)
    if refused is not None:
        return False, int(refused["code"]), refused.get("reason")
    silent = next((q for q in queries if q.get("outcome") in NO_ANSWER), None)
    if silent is not None:
        return False, None, NO_ANSWER[silent["outcome"]]
    return None, None, None


def registration(results: Mapping[str, CheckResult]) -> dict[str, Any]:
    """``registered``, ``registration_code``, ``registration_reason`` (see the module doc)."""
    bindings = _verdict(results, "sip.bindings")
    if bindings is not None and "bindings" in bindings.details:
        query = bindings.details.get("query") or {}
        return {
            "registered": any(not b.get("ours") for b in bindings.details["bindings"]),
            "registration_code": query.get("code"),
            "registration_reason": query.get("reason"),
        }
    register = results.get("sip.register")
    unknown = {"registered": None, "registration_code": None, "registration_reason": None}
    if register is None or register.details.get("mode") == "challenge_only":
        return unknown  # --no-register: no query lists bindings
    queries = _queries(register)
    accepted = next((q for q in queries if q.get("outcome") == o.OK), None)
    if accepted is not None:  # sip.bindings did not run: read the same listing ourselves
        return {
            "registered": any(not b.get("ours") for q in queries for b in q.get("bindings") or []),
            "registration_code": accepted.get("code"),
            "registration_reason": accepted.get("reason"),
        }
    registered, code, reason = _unanswered(register)
    return {"registered": registered, "registration_code": code, "registration_reason": reason}


def _said(final: Mapping[str, Any] | None) -> str:
    if not final:
        return "no final answer"
    text = f"{final.get('code')} {final.get('reason') or ''}".strip()
    return f"{text} from the {final['by']}" if final.get("by") else text


def _inbound_text(d: Mapping[str, Any]) -> str:
    where = f"{d.get('method', 'request')} over {str(d.get('transport', '?')).upper()}"
    arrived = d.get("arrived")
    if arrived is not None:
        return f"{where}: reached our own binding after {arrived.get('after_ms')} ms"
    return f"{where}: {_said(d.get('final'))}"


def inbound(results: Mapping[str, CheckResult]) -> dict[str, Any]:
    """``inbound`` and ``inbound_detail`` (see the module doc)."""
    found = results.get("sip.inbound")
    unknown: dict[str, Any] = {"inbound": None, "inbound_detail": None}
    if found is None or found.status is Status.ERROR:
        return unknown
    d = found.details
    if found.status is Status.PASS:
        return {"inbound": True, "inbound_detail": _inbound_text(d)}
    if found.status is Status.FAIL:
        if d.get("problem") == INBOUND_BLOCKED:
            return {"inbound": False, "inbound_detail": _inbound_text(d)}
        return unknown  # e.g. sip.binding_replaced: a verdict on us, not on the path
    if found.status is not Status.SKIP or found.summary.startswith("interrupted"):
        return unknown
    if "mode" not in d:  # skipped before sending: did the registrar answer sip.register?
        registered, code, reason = _unanswered(results.get("sip.register"))
        if registered is False and code is None:
            return {"inbound": False, "inbound_detail": f"the registrar did not answer: {reason}"}
        return unknown
    ours = d.get("registration")
    if ours is not None and not 200 <= int(ours.get("code") or 0) < 300:
        if ours.get("code"):
            return unknown  # the registrar refused our binding: see sip.register
        return {"inbound": False, "inbound_detail": "the registrar did not answer our REGISTER"}
    if d.get("final") is None and not d.get("platform_took"):
        said = d.get("error") or "silence"
        return {"inbound": False, "inbound_detail": f"the registrar did not answer ({said})"}
    return unknown


# ---- network measurements


def public_mapping(results: Mapping[str, CheckResult]) -> str | None:
    stun = results.get("net.stun")
    if stun is not None and stun.status is not Status.SKIP:
        servers = stun_details(stun.details).get("servers") or []
        answered = (
            s for s in servers if s.get("transport") == "udp" and s.get("outcome") == o.ANSWERED
        )
        return next((_ip(s.get("mapped")) for s in answered), None)
    register = _verdict(results, "sip.register")
    if register is None:
        return None
    return next(iter(register_details(register.details).get("public_addresses") or []), None)


def quality(results: Mapping[str, CheckResult]) -> dict[str, Any]:
    found = _verdict(results, "net.quality")
    if found is None or "mos" not in found.details:
        return {"quality_ok": None, "mos": None, "mos_threshold": None, "quality_crossed": None}
    d = found.details
    return {
        "quality_ok": found.status is Status.PASS,
        "mos": d["mos"],
        "mos_threshold": (d.get("thresholds") or {}).get("warn", {}).get("mos"),
        "quality_crossed": list(d.get("crossed") or []),
    }


def observe(results: Mapping[str, CheckResult]) -> dict[str, Any]:
    """The observation of one sample, as diag/watch_events.py events_between reads it."""
    return {
        "interfaces": interfaces(results),
        "default_route": default_route(results),
        "vpn": vpn(results),
        "audio": audio(results),
        **registration(results),
        **inbound(results),
        "public_mapping": public_mapping(results),
        **quality(results),
        "softphone_pids": softphone_pids(results),
    }


# ---- the sample line


def clock_offset(results: Mapping[str, CheckResult]) -> int | None:
    """host.clock's reading, else sip.register's (as the report's correlation)."""
    for check_id in ("host.clock", "sip.register"):
        found = results.get(check_id)
        offset = found.details.get("clock_offset_ms") if found is not None else None
        if isinstance(offset, int):
            return offset
    return None


def call_ids(results: Mapping[str, CheckResult]) -> list[str]:
    """Every SIP Call-ID the sample's checks used, each once, in check order."""
    return list(dict.fromkeys(c for r in results.values() for c in r.details.get("call_ids", [])))


def metrics(results: Mapping[str, CheckResult]) -> dict[str, float | None]:
    """net.quality's figures: average RTT, jitter, loss and MOS (None where not measured)."""
    found = _verdict(results, "net.quality")
    d = found.details if found is not None and "mos" in found.details else {}
    return {
        "rtt_ms": (d.get("rtt_ms") or {}).get("avg"),
        "jitter_ms": d.get("jitter_ms"),
        "loss_pct": d.get("loss_pct"),
        "mos": d.get("mos"),
    }


def _devices_present(results: Mapping[str, CheckResult]) -> bool | None:
    found = _verdict(results, "audio.devices")
    if found is None or "problems" not in found.details:
        return None
    return not found.details["problems"]


def sample_fields(
    results: Mapping[str, CheckResult], diagnosis_findings: Sequence[Finding]
) -> dict[str, Any]:
    """The fields of a timeline ``sample`` line (schema diag/timeline-schema-v1.json) but the
    envelope (v, type, watch_id, seq, t, mono) and duration_ms, which the watch loop adds."""
    seen = observe(results)
    pids = seen["softphone_pids"]
    offset = clock_offset(results)
    found_interfaces = seen["interfaces"]
    sound = seen["audio"] or {}
    return {
        "state": {
            "registered": seen["registered"],
            "inbound_reachable": seen["inbound"],
            "quality_ok": seen["quality_ok"],
            "devices_present": _devices_present(results),
            "softphone_running": None if pids is None else bool(pids),
            "public_address": seen["public_mapping"],
            "clock_offset_ms": offset,
        },
        "checks": {
            check_id: {"status": r.status.value, "summary": r.summary}
            for check_id, r in results.items()
        },
        "causes": [f.cause for f in diagnosis_findings],
        "call_ids": call_ids(results),
        "metrics": {**metrics(results), "clock_offset_ms": offset},
        "network": {
            "default_route": seen["default_route"],
            "addresses": None
            if found_interfaces is None
            else {n: i["addresses"] for n, i in found_interfaces.items() if i["addresses"]},
            "vpn": seen["vpn"],
        },
        "audio": {
            k: sound.get(k) for k in ("inputs", "outputs", "default_input", "default_output")
        },
    }
