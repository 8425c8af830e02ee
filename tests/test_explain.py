"""`sipdiag explain`: the status catalogue, golden on every entry, and its tolerant spellings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from clihelp import cli

from checks import REGISTRY
from diag.causes import CAUSES
from diag.logs.explain import CATALOGUE, CATEGORIES

GOLDEN = Path(__file__).resolve().parent / "data" / "explain" / "catalogue.json"
FAMILIES = {"audio", "host", "net", "sip", "number"}  # test_meta's check-id families
REQUIRED_CODES = [400, 401, 403, 404, 407, 408, 480, 481, 484, 486, 487, 488, 500, 502, 503]
REQUIRED_CODES += [504, 600, 603, 604, 606]
CONSOLE = "Failure (Rejected by Agent Console)"
DECLINE = "Failure (Rejected – SIP 603 Decline)"
FORBIDDEN = "Failure (Rejected – SIP 403 Forbidden)"


def explain_json(*statuses: str) -> list[dict[str, Any]]:
    r = cli("explain", "--format", "json", *statuses)
    assert r.code == 0, r.err
    loaded: list[dict[str, Any]] = r.json
    return loaded


def golden() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads(GOLDEN.read_text())
    return loaded


@pytest.mark.parametrize("entry", golden(), ids=lambda e: e["status"])
def test_explain_json_of_every_catalogue_entry_matches_the_golden_file(
    entry: dict[str, Any],
) -> None:
    assert explain_json(entry["status"]) == [entry]


def test_the_golden_file_covers_the_whole_catalogue() -> None:
    assert [e["status"] for e in golden()] == [e.status for e in CATALOGUE]


@pytest.mark.parametrize("code", REQUIRED_CODES)
def test_every_required_sip_code_is_explained(code: int) -> None:
    (entry,) = explain_json(f"SIP {code}")
    assert entry["sip_code"] == code
    assert entry["category"] in CATEGORIES
    assert entry["meaning"] and entry["next_step"] and entry["typical_causes"]


def test_catalogue_references_only_existing_cause_ids_and_check_families() -> None:
    check_ids = {c.id for c in REGISTRY}
    for e in CATALOGUE:
        assert e.category in CATEGORIES, e.status
        assert set(e.cause_ids) <= set(CAUSES), e.status
        assert all(c in FAMILIES or c in check_ids for c in e.checks), e.status


@pytest.mark.parametrize(
    ("spelling", "status", "category"),
    [
        (CONSOLE, CONSOLE, "agent_action"),
        ("rejected by agent console", "Failure (Rejected by Agent Console)", "agent_action"),
        (DECLINE, DECLINE, "agent_action"),
        ("Failure (Rejected - SIP 603 Decline)", DECLINE, "agent_action"),
        ("603", "Failure (Rejected – SIP 603 Decline)", "agent_action"),
        ("Failure (No Answer)", "Failure (No Answer)", "timeout"),
        ("NO ANSWER", "Failure (No Answer)", "timeout"),
        (FORBIDDEN, FORBIDDEN, "configuration"),
        ("Failure (Rejected - SIP 403 Forbidden)", FORBIDDEN, "configuration"),
        ("Rejected — SIP 403 Forbidden", "Failure (Rejected – SIP 403 Forbidden)", "configuration"),
        ("SIP 403", "Failure (Rejected – SIP 403 Forbidden)", "configuration"),
        ("403 Forbidden", "Failure (Rejected – SIP 403 Forbidden)", "configuration"),
        ("403", "Failure (Rejected – SIP 403 Forbidden)", "configuration"),
        ("sip 403 forbidden", "Failure (Rejected – SIP 403 Forbidden)", "configuration"),
        ("Failure (Rejected – SIP 486 Busy Here)", "SIP 486 Busy Here", "agent_action"),
        ("sip 408", "SIP 408 Request Timeout", "network"),
        ("487 Request Terminated", "SIP 487 Request Terminated", "timeout"),
        ("SIP 503 Service Unavailable", "SIP 503 Service Unavailable", "platform"),
    ],
)  # fmt: skip
def test_explain_accepts_tolerant_spellings(spelling: str, status: str, category: str) -> None:
    (entry,) = explain_json(spelling)
    assert (entry["input"], entry["status"], entry["category"]) == (spelling, status, category)


def test_the_four_platform_statuses_say_what_to_do() -> None:
    console, decline, no_answer, forbidden = explain_json(
        "Failure (Rejected by Agent Console)",
        "Failure (Rejected – SIP 603 Decline)",
        "Failure (No Answer)",
        "Failure (Rejected – SIP 403 Forbidden)",
    )
    assert "audit log" in console["next_step"]
    assert "pressed Decline" in decline["meaning"]
    assert "alerting timer" in no_answer["meaning"]
    assert "sipdiag check" in forbidden["next_step"]
    assert {"audio", "number", "net"} <= set(forbidden["checks"])
    assert {"audio.no_input_device", "number.not_permitted", "network.udp_blocked"} <= set(
        forbidden["cause_ids"]
    )


def test_explain_text_lists_causes_and_the_checks_this_build_has() -> None:
    r = cli("explain", "SIP 403")
    assert r.code == 0
    assert r.out.startswith("Failure (Rejected – SIP 403 Forbidden)\n  category: configuration\n")
    # Only families this build registers are offered (audio/number checks land separately).
    families = {c.family for c in REGISTRY}
    line = next(x for x in r.out.splitlines() if x.startswith("  sipdiag:  sipdiag check "))
    assert [f.strip() for f in line.split("--only ")[1:]] == [
        f for f in ("audio", "number", "net", "sip", "host") if f in families
    ]
    assert "audio.no_input_device" in r.out


@pytest.mark.parametrize(
    ("text", "suggested"),
    [
        ("Rejected by Agent Consle", "'Failure (Rejected by Agent Console)'"),
        ("SIP 499", "'SIP 500 Server Internal Error'"),
        ("Failure (No Answr)", "'Failure (No Answer)'"),
    ],
)
def test_unknown_status_exits_64_with_the_closest_statuses(text: str, suggested: str) -> None:
    r = cli("explain", text)
    assert r.code == 64 and r.out == ""
    assert r.err.startswith(f"sipdiag: error: unknown status '{text}' (hint: did you mean ")
    assert suggested in r.err and len(r.err.splitlines()) == 1


def test_explain_unknown_format_is_a_usage_error() -> None:
    r = cli("explain", "403", "--format", "yaml")
    assert r.code == 64
    assert r.err == "sipdiag: error: unknown --format 'yaml' (hint: use one of text, json)\n"


INBOUND_CHECKS = {"sip.bindings", "sip.inbound", "net.idle"}
NEW_CAUSES = {
    "sip.not_registered", "sip.extra_bindings", "sip.binding_unroutable",
    "network.inbound_blocked", "network.nat_binding_short",
}  # fmt: skip


def test_403_and_no_answer_point_at_the_checks_of_offers_to_the_agent_and_their_causes() -> None:
    no_answer, forbidden = explain_json("Failure (No Answer)", FORBIDDEN)
    for entry in (no_answer, forbidden):
        assert INBOUND_CHECKS <= set(entry["checks"]), entry["status"]
        assert NEW_CAUSES <= set(entry["cause_ids"]), entry["status"]
        assert {
            "inbound requests blocked by a firewall/NAT: the offer never reached the softphone",
            "no softphone registered for the agent's account",
        } <= set(entry["typical_causes"]), entry["status"]
    assert (
        "another device logged in with the same account rejected the offer"
        in (forbidden["typical_causes"])
    )
    assert any(
        c.startswith("the network forgets the UDP path after") for c in no_answer["typical_causes"]
    )
    assert "--idle 30,90,300" in no_answer["next_step"]


@pytest.mark.parametrize(
    ("status", "causes"),
    [
        ("SIP 408", {"network.inbound_blocked", "network.nat_binding_short"}),
        ("SIP 480", {"sip.not_registered", "network.inbound_blocked"}),
        ("SIP 504", {"network.inbound_blocked", "network.nat_binding_short"}),
        ("SIP 404", {"sip.not_registered"}),
        ("SIP 486", {"sip.extra_bindings"}),
        ("SIP 603", {"sip.extra_bindings"}),
    ],
)
def test_missed_and_rejected_offers_name_the_new_causes(status: str, causes: set[str]) -> None:
    (entry,) = explain_json(status)
    assert causes <= set(entry["cause_ids"])
    assert set(entry["checks"]) & INBOUND_CHECKS


def test_explain_text_offers_a_check_id_only_when_its_family_is_not_offered_whole() -> None:
    lines = cli("explain", "No Answer", "SIP 403").out.splitlines()
    commands = [x for x in lines if x.startswith("  sipdiag:  ")]
    assert commands[0].endswith("--only sip.bindings --only sip.inbound --only net.idle")
    assert "sip.inbound" not in commands[1] and "--only sip --only host" in commands[1]
