"""What changed between two samples of a watch (issue 18): the events a timeline records.

Pure functions over "observations" (what one sample saw: interfaces, the default route, VPNs,
audio devices, registration, inbound reachability, the public mapping, quality, the softphone's
processes), so the rules are tested without the OS. Sleep/resume is read from the two clocks: on
Linux and macOS the monotonic clock stops while the machine sleeps and the wall clock does not,
so wall time that ran ahead of monotonic time between two samples was spent asleep.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Event = tuple[str, dict[str, Any]]  # (event name as in the timeline schema, evidence)

SLEEP_TOLERANCE_S = 5.0  # wall minus monotonic drift beyond this between samples = asleep
# Registration answers that mean "refused", not "lost on the way".
REFUSED_CODES = frozenset({401, 403, 404, 407})


def sleep_resume(
    prev_wall: float,
    prev_mono: float,
    wall: float,
    mono: float,
    tolerance: float = SLEEP_TOLERANCE_S,
) -> Event | None:
    """A sleep/resume between two samples: the wall clock ran ahead of the monotonic one. A wall
    clock set back or forward by NTP shows the same, so small jumps are tolerated and the
    evidence says how long (``slept_s``)."""
    gap = (wall - prev_wall) - (mono - prev_mono)
    if gap <= tolerance:
        return None
    return "sleep_resume", {"slept_s": round(gap, 1), "wall_s": round(wall - prev_wall, 1)}


def _changed(name_up: str, name_down: str, before: set[str], after: set[str]) -> list[Event]:
    return [(name_up, {"name": n}) for n in sorted(after - before)] + [
        (name_down, {"name": n}) for n in sorted(before - after)
    ]


def events_between(prev: Mapping[str, Any] | None, cur: Mapping[str, Any]) -> list[Event]:
    """The events from observation ``prev`` to ``cur`` (none for the first sample). A key a
    sample did not observe (missing or None) raises no event for it."""
    if prev is None:
        return []
    out: list[Event] = []

    def both(key: str) -> bool:
        return prev.get(key) is not None and cur.get(key) is not None

    if both("interfaces"):
        a, b = prev["interfaces"], cur["interfaces"]
        up_a = {n for n, i in a.items() if i.get("up")}
        up_b = {n for n, i in b.items() if i.get("up")}
        out += _changed("interface_up", "interface_down", up_a, up_b)
        for name in sorted(set(a) & set(b)):
            old, new = set(a[name].get("addresses", [])), set(b[name].get("addresses", []))
            if old != new:
                evidence = {"name": name, "before": sorted(old), "after": sorted(new)}
                out.append(("address_changed", evidence))
    if both("default_route") and prev["default_route"] != cur["default_route"]:
        out.append(
            ("route_changed", {"before": prev["default_route"], "after": cur["default_route"]})
        )
    if both("vpn"):
        out += _changed("vpn_up", "vpn_down", set(prev["vpn"]), set(cur["vpn"]))
    if both("audio"):
        a, b = prev["audio"], cur["audio"]
        names_a = set(a.get("inputs", [])) | set(a.get("outputs", []))
        names_b = set(b.get("inputs", [])) | set(b.get("outputs", []))
        out += _changed("audio_device_added", "audio_device_removed", names_a, names_b)
        for kind in ("default_input", "default_output"):
            if a.get(kind) != b.get(kind):
                out.append(
                    (
                        "audio_default_changed",
                        {"kind": kind, "before": a.get(kind), "after": b.get(kind)},
                    )
                )
    if both("registered") and prev["registered"] != cur["registered"]:
        code = cur.get("registration_code")
        if cur["registered"]:
            out.append(("registration_recovered", {"code": code}))
        elif code in REFUSED_CODES:
            out.append(
                ("registration_refused", {"code": code, "reason": cur.get("registration_reason")})
            )
        else:
            out.append(
                ("registration_lost", {"code": code, "reason": cur.get("registration_reason")})
            )
    if both("inbound") and prev["inbound"] != cur["inbound"]:
        name = "inbound_recovered" if cur["inbound"] else "inbound_lost"
        out.append((name, {"detail": cur.get("inbound_detail")}))
    if both("public_mapping") and prev["public_mapping"] != cur["public_mapping"]:
        out.append(
            (
                "public_mapping_changed",
                {"before": prev["public_mapping"], "after": cur["public_mapping"]},
            )
        )
    if both("quality_ok") and prev["quality_ok"] != cur["quality_ok"]:
        name = "quality_recovered" if cur["quality_ok"] else "quality_below_threshold"
        out.append((name, {"mos": cur.get("mos"), "threshold": cur.get("mos_threshold")}))
    if both("softphone_pids"):
        before, after = set(prev["softphone_pids"]), set(cur["softphone_pids"])
        if before and not after:
            out.append(("softphone_stopped", {"pids": sorted(before)}))
        elif after and not before:
            out.append(("softphone_started", {"pids": sorted(after)}))
        elif before and after and not before & after:  # restarted between two samples
            out.append(("softphone_stopped", {"pids": sorted(before)}))
            out.append(("softphone_started", {"pids": sorted(after)}))
    return out
