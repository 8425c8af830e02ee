"""net.media: the media path is open -- TURN reachability and allocation, RTP port reachability.

For each --turn server, side by side: a STUN Binding over UDP (is UDP open at all?), then a TURN
Allocate over UDP and over TCP with the long-term credential (401 challenge, authenticated retry,
relayed address), released at once with a Refresh of lifetime 0. For each --media endpoint, a
STUN Binding to its first, middle and last port (ICE-capable media servers answer STUN on their
RTP ports). aioice's STUN codec and TURN client do the protocol work; this module plans the
probes, bounds them by the check's deadline and gives the verdict.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.wire.turn import (
    AUTH_FAILED,
    PROBE_TIMEOUT_S,
    Row,
    allocate,
    binding,
    guard,
    resolve_address,
)
from diag import outcomes as o
from diag.config import Secret
from diag.context import Context
from diag.model import CheckResult, Status
from diag.target import parse_registrar

if TYPE_CHECKING:
    pass

DEFAULT_TURN_PORT = 3478
MIN_SILENCE_S = 1.0  # two sends and 0.5 s more: less silence than this is no evidence
RESERVE_S = 0.15  # kept back from the deadline to build the result
REPLIED = frozenset({o.OK, o.ANSWERED, o.CHALLENGED, o.REJECTED, o.REFUSED, AUTH_FAILED})
# A verdict per server or endpoint: the status it gives and how bad it is (worst one leads).
VERDICTS: dict[str, tuple[Status, int]] = {
    "blocked": (Status.FAIL, 9),
    "auth_failed": (Status.FAIL, 8),
    "rejected": (Status.FAIL, 7),
    "media_blocked": (Status.FAIL, 6),
    "unresolved": (Status.FAIL, 5),
    "not_finished": (Status.ERROR, 4),
    "udp_blocked": (Status.WARN, 3),
    "media_unproven": (Status.WARN, 2),
    "untested": (Status.PASS, 1),
    "inconclusive": (Status.PASS, 1),
    "no_listener": (Status.PASS, 0),
    "ok": (Status.PASS, 0),
}
SAYS = {
    o.OK: "allocated",
    o.ANSWERED: "answered",
    o.CHALLENGED: "answers (401 challenge, no credentials to answer it)",
    AUTH_FAILED: "credentials rejected",
    o.REJECTED: "refused the request",
    o.TIMEOUT: "silent",
    o.REFUSED: "refused (ICMP)",
    o.UNREACHABLE: "unreachable",
    o.DNS_FAILURE: "name does not resolve",
    o.ERROR: "broke",
    o.NOT_FINISHED: "not finished",
}


@dataclass(frozen=True)
class Server:
    text: str
    host: str
    port: int


@dataclass(frozen=True)
class MediaRange:
    text: str
    host: str
    low: int
    high: int

    @property
    def ports(self) -> list[int]:
        """First, middle (same parity as the first: RTP ports are even) and last."""
        middle = self.low + (self.high - self.low) // 4 * 2
        return sorted({self.low, middle, self.high})


def parse_server(text: str) -> Server:
    target = parse_registrar(text)
    return Server(text, target.host, target.port or DEFAULT_TURN_PORT)


def parse_media(text: str) -> MediaRange:
    """``HOST:PORT`` or ``HOST:LOW-HIGH``; ValueError says what is wrong."""
    host_text, _, ports = text.rpartition(":")
    low_text, _, high_text = ports.partition("-")
    low, high = int(low_text), int(high_text or low_text)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range {ports} is not within 1-65535, low to high")
    return MediaRange(text, parse_registrar(host_text).host, low, high)


def check_media(ctx: Context) -> CheckResult:
    s = ctx.settings
    if not s.turn and not s.media:
        return CheckResult(
            Status.SKIP,
            "no TURN server or media endpoint configured",
            {"turn": [], "media": []},
            "pass --turn HOST[:PORT] with --turn-user, and/or --media HOST:LOW-HIGH",
        )
    try:
        ranges = [parse_media(text) for text in s.media]
    except ValueError as exc:
        hint = "use HOST:PORT or HOST:LOW-HIGH, e.g. media.example.com:10000-20000"
        return CheckResult(Status.ERROR, f"invalid --media: {exc}", {"turn": [], "media": []}, hint)
    value = ctx.environ.get(s.turn_password_env)
    password = Secret(value) if value and s.turn_user else None
    servers = [parse_server(t) for t in s.turn]
    turn_rows, media_rows = asyncio.run(_probe_all(ctx, servers, ranges, s.turn_user, password))
    return _verdict(ctx, servers, ranges, turn_rows, media_rows)


async def _probe_all(
    ctx: Context,
    servers: list[Server],
    ranges: list[MediaRange],
    user: str | None,
    pw: Secret | None,
) -> tuple[list[Row], list[Row]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, ctx.remaining() - RESERVE_S)
    until = min(deadline, loop.time() + PROBE_TIMEOUT_S)
    short = until - loop.time() < MIN_SILENCE_S  # then silence is no evidence
    hosts = sorted({*(x.host for x in servers), *(x.host for x in ranges)})
    found = await asyncio.gather(
        *(resolve_address(h, until, ctx.settings.dns_server) for h in hosts)
    )
    addr = dict(zip(hosts, found, strict=True))
    jobs: list[Awaitable[Row]] = []
    for srv in servers:
        at = (addr[srv.host], srv.port)
        base: Row = {"server": srv.text, "address": addr[srv.host], "probe": "binding"}
        jobs.append(guard({**base, "transport": "udp"}, binding, at, until, short))
        for tp in ("udp", "tcp"):
            row = {**base, "probe": "allocate", "transport": tp}
            jobs.append(guard(row, functools.partial(allocate, tp, user, pw), at, until, short))
    for rng in ranges:
        for port in rng.ports:
            row = {"endpoint": rng.text, "port": port, "address": addr[rng.host]}
            jobs.append(guard(row, binding, (addr[rng.host], port), until, short))
    rows = await asyncio.gather(*jobs)
    return [r for r in rows if "server" in r], [r for r in rows if "endpoint" in r]


def _verdict(
    ctx: Context,
    servers: list[Server],
    ranges: list[MediaRange],
    turn_rows: list[Row],
    media_rows: list[Row],
) -> CheckResult:
    env = ctx.settings.turn_password_env
    judged: list[tuple[str, str, str, str | None]] = []  # (target, verdict, phrase, hint)
    for srv in servers:
        rows = [r for r in turn_rows if r["server"] == srv.text and r["probe"] == "allocate"]
        verdict = _server_verdict([r for r in turn_rows if r["server"] == srv.text])
        phrase = f"TURN {srv.text}: " + ", ".join(
            f"{r['transport'].upper()} {_says(r)}" for r in rows
        )
        if verdict == "udp_blocked":
            phrase += ": media will be relayed over TCP: expect worse audio"
        relay = f"outbound UDP {srv.port} and the relay port range to {srv.host}"
        error = next((r["error"] for r in rows if r["outcome"] == o.REJECTED), "")
        hint = {
            "blocked": f"allow {relay} (TCP {srv.port} as a fallback)",
            "udp_blocked": f"allow {relay}",
            "auth_failed": f"check --turn-user and the TURN password in ${env}",
            "rejected": f"ask the TURN provider why {srv.host} refuses the allocation ({error})",
            "unresolved": f"check the TURN server name {srv.host} and this machine's DNS",
            "untested": f"pass --turn-user and export {env} to test a TURN allocation",
            "not_finished": "re-run with a larger --timeout",
        }.get(verdict)
        judged.append((srv.text, verdict, phrase, hint))
    replied = {r["address"] for r in [*turn_rows, *media_rows] if r["outcome"] in REPLIED}
    relay_works = any(v in ("ok", "untested", "udp_blocked") for _, v, _, _ in judged)
    for rng in ranges:
        rows = [r for r in media_rows if r["endpoint"] == rng.text]
        verdict = _media_verdict(rows, replied, relay_works)
        phrase = f"media {rng.text}: " + ", ".join(f"{r['port']} {_says(r)}" for r in rows)
        if verdict == "media_blocked":
            phrase += " (filtered: the host answers on other ports)"
        elif verdict == "no_listener":
            phrase += " (the host is reached; nothing listens there outside a call)"
        elif verdict in ("inconclusive", "media_unproven"):
            phrase += " (inconclusive: media servers may answer STUN only during a call)"
        span = f"UDP {rng.low}-{rng.high} to {rng.host}"
        hint = {
            "media_blocked": f"allow outbound {span}",
            "media_unproven": f"place a test call, or allow outbound {span}",
            "unresolved": f"check the media host name {rng.host} and this machine's DNS",
            "not_finished": "re-run with a larger --timeout",
        }.get(verdict)
        judged.append((rng.text, verdict, phrase, hint))
    worst = max(judged, key=lambda j: VERDICTS[j[1]][1])
    status = VERDICTS[worst[1]][0]
    details = {
        "turn": turn_rows,
        "media": media_rows,
        "verdicts": {target: verdict for target, verdict, _, _ in judged},
        "problem": None if status is Status.PASS else worst[1],
    }
    hint = worst[3] if status is not Status.PASS else next((h for *_, h in judged if h), None)
    return CheckResult(status, "; ".join(j[2] for j in judged), details, hint)


def _server_verdict(rows: list[Row]) -> str:
    by = {(r["probe"], r["transport"]): r["outcome"] for r in rows}
    udp, tcp, seen = by["allocate", "udp"], by["allocate", "tcp"], set(by.values())
    if o.DNS_FAILURE in seen or AUTH_FAILED in seen:
        return "unresolved" if o.DNS_FAILURE in seen else "auth_failed"
    if udp in (o.OK, o.CHALLENGED):
        return "ok" if udp == o.OK else "untested"
    if tcp in (o.OK, o.CHALLENGED):
        return "udp_blocked"
    if o.REJECTED in (udp, tcp):
        return "rejected"
    return "not_finished" if o.NOT_FINISHED in seen else "blocked"


def _media_verdict(rows: list[Row], replied: set[str], relay_works: bool) -> str:
    seen = {r["outcome"] for r in rows}
    if o.DNS_FAILURE in seen:
        return "unresolved"
    if o.UNREACHABLE in seen or (o.TIMEOUT in seen and rows[0]["address"] in replied):
        return "media_blocked"  # silence next to an answer from the same host is a filter
    if o.TIMEOUT in seen:
        return "inconclusive" if relay_works else "media_unproven"
    if o.NOT_FINISHED in seen:
        return "not_finished"
    return "ok" if o.ANSWERED in seen else "no_listener"


def _says(row: Row) -> str:
    words = SAYS[row["outcome"]]
    if row["outcome"] == o.OK:
        return f"{words} {row['relayed']}"
    if row["outcome"] in (o.REJECTED, AUTH_FAILED, o.ERROR) and row["error"]:
        return f"{words} ({row['error']})"
    return words
