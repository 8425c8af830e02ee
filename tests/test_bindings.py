"""sip.bindings' and sip.inbound's pure logic: address classes, NAT fix-up parameters, the
unroutable rule, what sip.bindings concludes from a query's listing, who answered, what is
"blocked", and the severities diagnosis gives. The real-peer tests are tests/test_inbound.py."""

from __future__ import annotations

from typing import Any

import pytest
from contexts import make_context

from checks.sip.bindings import (
    address_class,
    check_bindings,
    contact_host,
    describe,
    nat_fixups,
    unroutable,
)
from checks.sip.inbound import blocked
from diag.config import Secret
from diag.context import Check, CheckRun
from diag.diagnosis import diagnose
from diag.evidence import Binding
from diag.model import CheckResult, Status


def binding(contact: str, **params: str) -> Binding:
    return {
        "contact": contact, "expires": 600, "transport": "udp", "instance": None,
        "reg_id": None, "q": None, "ours": ";sipdiag=" in contact, "params": dict(params),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("10.1.2.3", "private"), ("192.168.1.20", "private"), ("172.16.0.1", "private"),
        ("100.64.0.7", "cgnat"), ("100.127.255.1", "cgnat"), ("169.254.3.4", "link-local"),
        ("127.0.0.1", "loopback"), ("[::1]", "loopback"), ("fd00::5", "private"),
        ("fe80::1", "link-local"), ("203.0.113.9", "private"), ("8.8.8.8", "public"),
        ("2001:4860::8888", "public"), ("pc17.corp.example", "name"),
    ],
)  # fmt: skip
def test_address_classes(host: str, kind: str) -> None:
    # 203.0.113.0/24 is TEST-NET-3: Python (and IANA) count documentation ranges as private.
    assert address_class(host) == kind


@pytest.mark.parametrize(
    ("contact", "host"),
    [
        ("sip:alice@10.0.0.5:5060;transport=udp", "10.0.0.5"),
        ("sip:alice-0x1@[fd00::5]:5062;ob", "fd00::5"),
        ("sips:alice@pc.example;transport=tls", "pc.example"),
        ("sip:192.168.1.4", "192.168.1.4"),
    ],
)
def test_contact_host(contact: str, host: str) -> None:
    assert contact_host(contact) == host


def test_nat_fixup_parameters_in_the_header_or_the_uri_and_outbound_reg_id() -> None:
    assert nat_fixups(binding("sip:a@10.0.0.5:5060", received="sip:81.2.69.7:40000")) == [
        "received"
    ]
    assert nat_fixups(binding("sip:a@10.0.0.5:5060;alias=81.2.69.7~40000~1")) == ["alias"]
    assert nat_fixups(binding("sip:a@10.0.0.5:5060;ob")) == ["ob"]
    outbound = binding("sip:a@10.0.0.5:5060")
    outbound["reg_id"] = 1
    assert nat_fixups(outbound) == ["reg-id"]
    assert nat_fixups(binding("sip:a@10.0.0.5:5060")) == []


def seen(address: str) -> dict[str, Any]:
    return {"address": address, "port": 40000, "transport": "udp"}


def test_unroutable_needs_a_private_contact_another_source_and_no_fixup() -> None:
    private = describe(binding("sip:a@10.0.0.5:5060"))
    assert unroutable(private, seen("81.2.69.7"))  # type: ignore[arg-type]
    assert not unroutable(private, seen("10.0.0.5"))  # type: ignore[arg-type]  # no NAT
    assert not unroutable(private, None)  # the registrar said nothing about our source
    fixed = describe(binding("sip:a@10.0.0.5:5060", received="sip:81.2.69.7:40000"))
    assert not unroutable(fixed, seen("81.2.69.7"))  # type: ignore[arg-type]
    public = describe(binding("sip:a@81.2.69.7:5060"))
    assert not unroutable(public, seen("81.2.69.8"))  # type: ignore[arg-type]
    cgnat = describe(binding("sip:a@100.64.1.1:5060"))
    assert unroutable(cgnat, seen("81.2.69.7"))  # type: ignore[arg-type]


def register_result(bindings: list[Binding], received: str | None = "81.2.69.7") -> CheckResult:
    query = {
        "transport": "udp", "outcome": "ok", "code": 200, "reason": "OK", "bindings": bindings,
        "received": received, "rport": 40000 if received else None,
        "target": {"host": "pbx.example", "port": 5060, "address": "192.0.2.10"},
    }  # fmt: skip
    return CheckResult(Status.PASS, "registrar accepts the credentials", {"attempts": [query]})


def softphone_result(running: bool) -> CheckResult:
    status = Status.PASS if running else Status.FAIL
    return CheckResult(status, "", {"running": [{"pid": 1, "name": "zoiper"}] if running else []})


def bindings_run(**results: CheckResult) -> CheckResult:
    ctx = make_context(registrar="pbx.example", user="alice", results=results)
    return check_bindings(ctx)


def findings(result: CheckResult) -> dict[str, str]:
    check = Check("sip.bindings", "", lambda ctx: result)
    return {f.cause: f.severity.value for f in diagnose([CheckRun(check, result)])}


def test_one_softphone_with_a_fixup_passes_and_ours_never_counts() -> None:
    ours = binding("sip:alice@10.0.0.9:6000;transport=udp;sipdiag=abcd1234")
    phone = binding("sip:alice@10.0.0.5:5060", received="sip:81.2.69.7:40000")
    result = bindings_run(**{"sip.register": register_result([phone, ours])})
    assert result.status is Status.PASS, result.summary
    assert [b["ours"] for b in result.details["bindings"]] == [False, True]
    assert findings(result) == {}


def test_no_binding_is_a_warning_unless_the_softphone_runs() -> None:
    quiet = bindings_run(**{"sip.register": register_result([])})
    assert quiet.status is Status.WARN and findings(quiet) == {"sip.not_registered": "warning"}
    running = bindings_run(
        **{"sip.register": register_result([]), "host.softphone": softphone_result(True)}
    )
    assert running.status is Status.FAIL
    assert findings(running) == {"sip.not_registered": "critical"}
    assert "running but no device is registered" in running.summary


def test_two_other_bindings_are_extra_and_listed_with_transport_and_expiry() -> None:
    a = binding("sip:alice@81.2.69.7:5060")
    b = binding("sip:alice@81.2.69.20:5070;transport=tcp")
    b["transport"] = "tcp"
    result = bindings_run(**{"sip.register": register_result([a, b])})
    assert findings(result) == {"sip.extra_bindings": "warning"}
    assert "UDP, expires in 600 s" in result.summary and "TCP" in result.summary
    assert result.details["extra"] == [a["contact"], b["contact"]]


def test_a_private_contact_seen_from_another_address_is_unroutable() -> None:
    result = bindings_run(**{"sip.register": register_result([binding("sip:alice@10.0.0.5")])})
    assert findings(result) == {"sip.binding_unroutable": "warning"}
    assert "81.2.69.7" in result.details["actions"]["sip.binding_unroutable"]


def test_a_query_the_registrar_refused_skips_with_the_answer_quoted() -> None:
    refused = CheckResult(
        Status.FAIL, "", {"attempts": [{"transport": "udp", "outcome": "rejected",
                                        "code": 405, "reason": "Method Not Allowed"}]},
    )  # fmt: skip
    result = bindings_run(**{"sip.register": refused})
    assert result.status is Status.SKIP and "405 Method Not Allowed" in result.summary
    assert findings(result) == {}


@pytest.mark.parametrize(
    ("out", "expected"),
    [
        ({"mode": "softphone", "final": {"code": 408, "by": "registrar"}}, True),
        ({"mode": "softphone", "final": {"code": 480, "by": "registrar"}}, True),
        ({"mode": "softphone", "final": {"code": 503, "by": "registrar"}}, True),
        ({"mode": "softphone", "final": None, "platform_took": True}, True),
        ({"mode": "softphone", "final": None, "platform_took": False}, False),
        ({"mode": "softphone", "final": {"code": 200, "by": "binding"}}, False),
        ({"mode": "softphone", "final": {"code": 486, "by": "binding"}}, False),
        ({"mode": "softphone", "final": {"code": 403, "by": "registrar"}}, False),
        ({"mode": "own_binding", "final": {"code": 408, "by": "registrar"}}, True),
        ({"mode": "own_binding", "final": {"code": 200, "by": "binding"},
          "arrived": {"source": "x"}}, False),
    ],
)  # fmt: skip
def test_what_counts_as_blocked(out: dict[str, Any], expected: bool) -> None:
    assert blocked(out) is expected


def test_unroutable_is_dropped_when_sip_inbound_reached_the_softphone() -> None:
    # A platform that fixes NAT without marking the binding (a forced rport) still reaches it:
    # sip.inbound's pass is the stronger evidence, so no contradicting warning.
    unrouted = bindings_run(**{"sip.register": register_result([binding("sip:alice@10.0.0.5")])})
    inbound = CheckResult(Status.PASS, "reached", {"mode": "softphone", "problem": None})
    runs = [
        CheckRun(Check("sip.bindings", "", lambda ctx: unrouted), unrouted),
        CheckRun(Check("sip.inbound", "", lambda ctx: inbound), inbound),
    ]
    assert "sip.binding_unroutable" not in {f.cause for f in diagnose(runs)}
    failed = CheckResult(Status.SKIP, "not tested", {"mode": "softphone", "problem": None})
    runs[1] = CheckRun(runs[1].check, failed)
    assert "sip.binding_unroutable" in {f.cause for f in diagnose(runs)}


def test_ctrl_c_during_the_inbound_wait_is_no_evidence_of_a_block() -> None:
    from checks.sip.inbound import Plan, judge
    from checks.wire.sipua import Account, Server

    ctx = make_context(registrar="pbx.example", user="alice")
    plan = Plan(
        Server("udp", "pbx.example", 5060, "192.0.2.10"),
        Account("alice", "pbx.example", "alice", Secret("x"), "ua"),
        [binding("sip:alice@81.2.69.7:5060")], None, "pbx",
    )  # fmt: skip
    out: dict[str, Any] = {
        "mode": "softphone", "method": "OPTIONS", "transport": "udp", "final": None,
        "arrived": None, "provisional": [], "challenged": True, "platform_took": True,
        "for_bindings": ["sip:alice@81.2.69.7:5060"], "request_uri": "sip:alice@pbx.example",
        "error": "interrupted", "registration": None,
    }  # fmt: skip
    assert judge(ctx, plan, out).status is Status.FAIL  # without Ctrl-C: blocked
    ctx.stop.set()
    result = judge(ctx, plan, out)
    assert result.status is Status.SKIP and "interrupted" in result.summary
