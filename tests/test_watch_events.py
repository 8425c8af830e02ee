"""The events a watch records between two samples (pure rules, diag/watch_events.py), and
sleep/resume from the two clocks: it cannot be produced here, so the clocks are injected (an OS
boundary, issue 18). Every event name is one the timeline schema accepts."""

from __future__ import annotations

from typing import Any

import pytest

from diag.timeline import schema
from diag.watch_events import events_between, sleep_resume

BASE: dict[str, Any] = {
    "interfaces": {"eth0": {"up": True, "addresses": ["10.0.0.5"]}, "wlan0": {"up": False}},
    "default_route": {"dev": "eth0", "gateway": "10.0.0.1"},
    "vpn": [],
    "audio": {"inputs": ["Jabra"], "outputs": ["Jabra", "Speakers"],
              "default_input": "Jabra", "default_output": "Jabra"},
    "registered": True,
    "inbound": True,
    "public_mapping": "81.2.69.7:40000",
    "quality_ok": True,
    "softphone_pids": [4242],
}  # fmt: skip


def changed(**updates: Any) -> dict[str, Any]:
    return {**BASE, **updates}


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (changed(interfaces={"eth0": {"up": False, "addresses": ["10.0.0.5"]},
                             "wlan0": {"up": False}}),
         [("interface_down", {"name": "eth0"})]),
        (changed(interfaces={"eth0": {"up": True, "addresses": ["10.0.0.9"]},
                             "wlan0": {"up": False}}),
         [("address_changed", {"name": "eth0", "before": ["10.0.0.5"], "after": ["10.0.0.9"]})]),
        (changed(default_route={"dev": "tun0", "gateway": None}),
         [("route_changed", {"before": BASE["default_route"],
                             "after": {"dev": "tun0", "gateway": None}})]),
        (changed(vpn=["tun0"]), [("vpn_up", {"name": "tun0"})]),
        (changed(audio={**BASE["audio"], "inputs": [], "outputs": ["Speakers"],
                        "default_input": None}),
         [("audio_device_removed", {"name": "Jabra"}),
          ("audio_default_changed", {"kind": "default_input", "before": "Jabra", "after": None})]),
        (changed(registered=False, registration_code=408, registration_reason="timeout"),
         [("registration_lost", {"code": 408, "reason": "timeout"})]),
        (changed(registered=False, registration_code=403, registration_reason="Forbidden"),
         [("registration_refused", {"code": 403, "reason": "Forbidden"})]),
        (changed(inbound=False, inbound_detail="408 after 4 s"),
         [("inbound_lost", {"detail": "408 after 4 s"})]),
        (changed(public_mapping="81.2.69.7:41234"),
         [("public_mapping_changed", {"before": "81.2.69.7:40000", "after": "81.2.69.7:41234"})]),
        (changed(quality_ok=False, mos=2.9, mos_threshold=3.5),
         [("quality_below_threshold", {"mos": 2.9, "threshold": 3.5})]),
        (changed(softphone_pids=[]), [("softphone_stopped", {"pids": [4242]})]),
        (changed(softphone_pids=[5151]),
         [("softphone_stopped", {"pids": [4242]}), ("softphone_started", {"pids": [5151]})]),
    ],
)  # fmt: skip
def test_each_change_is_one_event_with_its_evidence(
    after: dict[str, Any], expected: list[Any]
) -> None:
    assert events_between(BASE, after) == expected
    names = schema()["allOf"][2]["then"]["properties"]["event"]["enum"]
    assert all(name in names for name, _ in expected)


def test_nothing_changed_or_not_observed_is_no_event() -> None:
    assert events_between(BASE, dict(BASE)) == []
    assert events_between(None, BASE) == []  # the first sample
    assert events_between(BASE, changed(registered=None, audio=None, inbound=None)) == []


def test_recoveries_are_events_too() -> None:
    lost = changed(registered=False, registration_code=408, inbound=False, quality_ok=False)
    assert [e for e, _ in events_between(lost, BASE)] == [
        "registration_recovered", "inbound_recovered", "quality_recovered",
    ]  # fmt: skip


def test_sleep_resume_is_wall_time_that_ran_ahead_of_monotonic_time() -> None:
    # 60 s samples; the laptop slept 20 minutes between two of them.
    assert sleep_resume(1000.0, 50.0, 1060.2, 110.1) is None  # an ordinary interval
    assert sleep_resume(1000.0, 50.0, 1063.0, 110.0) is None  # NTP nudged the clock by 3 s
    event = sleep_resume(1000.0, 50.0, 2260.0, 110.0)
    assert event == ("sleep_resume", {"slept_s": 1200.0, "wall_s": 1260.0})
