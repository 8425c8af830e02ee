"""net.quality: network quality is good enough for calls.

A paced UDP exchange shaped like RTP: up to 50 STUN Binding requests, one every 20 ms, to the
first --stun server, answers matched by transaction id. From send and arrival times: RTT
min/avg/max/p95, jitter (the RFC 3550 interarrival estimator applied to the round trip), loss,
reordering, and a MOS estimate from the ITU-T G.107 E-model for G.711. The formulas are small
pure functions below, tested against the standards' known points.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from checks.wire.turn import resolve_address
from diag.context import Context
from diag.model import CheckResult, Status
from diag.target import parse_registrar

DEFAULT_STUN_PORT = 3478
PACKETS = 50
INTERVAL_S = 0.020  # one request per 20 ms, the packet rate of G.711/20 ms RTP
MIN_PACKETS = 10  # fewer than this is no measurement
MIN_DRAIN_S = 0.3  # after the last request, wait at least this long for late answers ...
DRAIN_RTT_FACTOR = 2.0  # ... or twice the slowest round trip seen (a jitter buffer drops later)
MAX_DRAIN_S = 1.0  # ... but never longer, and never past the deadline
RESERVE_S = 0.15  # kept back from the deadline to build the result

# Thresholds as VoIP readiness tools use them: any crossed -> warn; the FAIL ones -> fail.
WARN_AT = {"rtt_ms": 100.0, "jitter_ms": 30.0, "loss_pct": 1.0, "mos": 3.5}
FAIL_AT = {"mos": 3.1, "loss_pct": 5.0}

# E-model (ITU-T G.107) for G.711 at 20 ms packets.
R_DEFAULT = 93.2  # R0 - Is with every G.107 default (advantage factor A = 0)
CODEC_DELAY_MS = 20.0  # one 20 ms frame of packetisation
JITTER_BUFFER_FACTOR = 2.0  # a jitter buffer holding twice the measured jitter
IE_G711 = 0.0  # equipment impairment of G.711 (G.113 Appendix I)
BPL_G711 = 4.3  # its packet-loss robustness without concealment (G.113 Appendix I)


def delay_impairment(one_way_ms: float) -> float:
    """Id for G.107's default parameters, in the usual closed form (Cole & Rosenbluth 2001):
    Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3), d the one-way (mouth-to-ear) delay in ms."""
    return 0.024 * one_way_ms + 0.11 * max(0.0, one_way_ms - 177.3)


def effective_equipment_impairment(
    loss_pct: float, ie: float = IE_G711, bpl: float = BPL_G711, burst_r: float = 1.0
) -> float:
    """G.107 (7-29): Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl); random loss: BurstR 1."""
    return ie + (95.0 - ie) * loss_pct / (loss_pct / burst_r + bpl)


def one_way_delay(rtt_ms: float, jitter_ms: float) -> float:
    """Half the round trip, plus the jitter buffer, plus the codec's own delay."""
    return rtt_ms / 2 + JITTER_BUFFER_FACTOR * jitter_ms + CODEC_DELAY_MS


def r_factor(one_way_ms: float, loss_pct: float) -> float:
    """R = 93.2 - Id - Ie,eff (Is and A at their defaults)."""
    return R_DEFAULT - delay_impairment(one_way_ms) - effective_equipment_impairment(loss_pct)


def mos_from_r(r: float) -> float:
    """G.107 Annex B: MOS_CQE = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6, 1 below 0, 4.5 above
    100; held at 1 where the polynomial dips under it (0 < R < 6.5)."""
    if r >= 100:
        return 4.5
    return max(1.0, 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6) if r > 0 else 1.0


def rfc3550_jitter(transits_ms: Sequence[float]) -> float:
    """RFC 3550 §6.4.1: J += (|D(i-1,i)| - J) / 16, D the difference of successive transit
    times in arrival order (here the round trips: receive time minus send time)."""
    jitter = 0.0
    for previous, current in itertools.pairwise(transits_ms):
        jitter += (abs(current - previous) - jitter) / 16
    return jitter


@dataclass(frozen=True)
class Figures:
    sent: int
    received: int
    loss_pct: float
    rtt_ms: dict[str, float]
    jitter_ms: float
    reordered: int
    duplicates: int
    r_factor: float
    mos: float


def figures(sent: int, arrivals: Sequence[tuple[int, float]], duplicates: int = 0) -> Figures:
    """``arrivals``: (sequence number, RTT ms) of each first answer, in arrival order."""
    rtts = sorted(rtt for _, rtt in arrivals)
    p95 = rtts[max(0, math.ceil(0.95 * len(rtts)) - 1)]  # nearest rank
    avg = sum(rtts) / len(rtts)
    reordered, highest = 0, -1
    for seq, _ in arrivals:
        reordered += seq < highest  # arrived after a later request's answer
        highest = max(highest, seq)
    jitter = rfc3550_jitter([rtt for _, rtt in arrivals])
    loss = 100.0 * (sent - len(arrivals)) / sent
    r = r_factor(one_way_delay(avg, jitter), loss)
    return Figures(
        sent=sent,
        received=len(arrivals),
        loss_pct=round(loss, 1),
        rtt_ms={
            k: round(v, 1)
            for k, v in (("min", rtts[0]), ("avg", avg), ("max", rtts[-1]), ("p95", p95))
        },
        jitter_ms=round(jitter, 2),
        reordered=reordered,
        duplicates=duplicates,
        r_factor=round(r, 1),
        mos=round(mos_from_r(r), 2),
    )


def rtt_series(sent: int, arrivals: Sequence[tuple[int, float]]) -> list[float | None]:
    """Each request's RTT in ms by sequence number, ``None`` where no answer came (at most
    PACKETS values): the report's RTT/jitter chart draws it (diag/render/pictures.py)."""
    series: list[float | None] = [None] * sent
    for seq, rtt in arrivals:
        if 0 <= seq < sent:
            series[seq] = round(rtt, 1)
    return series


def judge(f: Figures) -> tuple[Status, list[str]]:
    """The status and, in words, every threshold the figures cross."""
    rtt, w, crossed = f.rtt_ms["avg"], WARN_AT, []
    if rtt > w["rtt_ms"]:
        crossed.append(f"RTT {rtt:.0f} ms > {w['rtt_ms']:g} ms")
    if f.jitter_ms > w["jitter_ms"]:
        crossed.append(f"jitter {f.jitter_ms:.1f} ms > {w['jitter_ms']:g} ms")
    if f.loss_pct > w["loss_pct"]:
        crossed.append(f"loss {f.loss_pct:g} % > {w['loss_pct']:g} %")
    if f.mos < w["mos"]:
        crossed.append(f"MOS {f.mos:.2f} < {w['mos']:g}")
    if f.mos < FAIL_AT["mos"] or f.loss_pct > FAIL_AT["loss_pct"]:
        return Status.FAIL, crossed
    return (Status.WARN if crossed else Status.PASS), crossed


class _Pacer(asyncio.DatagramProtocol):
    """Records the first answer to each request: (sequence number, RTT ms), arrival order."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.sent: dict[bytes, tuple[int, float]] = {}
        self.answered: set[bytes] = set()
        self.arrivals: list[tuple[int, float]] = []
        self.duplicates = 0
        self.refused: Exception | None = None
        self.all_in = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        from aioice import stun

        now = self.loop.time()
        try:
            message = stun.parse_message(data)
        except (ValueError, struct.error):  # not STUN; a short fixed-size attribute (aioice)
            return
        tid = message.transaction_id
        if tid in self.answered:
            self.duplicates += 1
        elif tid in self.sent and message.message_class == stun.Class.RESPONSE:
            seq, sent_at = self.sent[tid]
            self.answered.add(tid)
            self.arrivals.append((seq, (now - sent_at) * 1000))
            if len(self.answered) == len(self.sent):
                self.all_in.set()

    def error_received(self, exc: Exception) -> None:
        self.refused = exc  # ICMP port unreachable on the connected socket


async def _exchange(target: tuple[str, int], count: int, until: float) -> _Pacer:
    from aioice import stun

    loop = asyncio.get_running_loop()
    transport, pacer = await loop.create_datagram_endpoint(_Pacer, remote_addr=target)
    try:
        start = loop.time()
        for seq in range(count):
            if pacer.refused and not pacer.arrivals:
                break  # nothing listens there: no use sending the rest
            request = bytes(stun.Message(stun.Method.BINDING, stun.Class.REQUEST))
            pacer.sent[request[8:20]] = (seq, loop.time())
            pacer.all_in.clear()
            transport.sendto(request)
            if seq + 1 < count:
                await asyncio.sleep(max(0.0, start + (seq + 1) * INTERVAL_S - loop.time()))
        if pacer.refused and not pacer.arrivals:
            return pacer
        slowest = max((rtt for _, rtt in pacer.arrivals), default=MAX_DRAIN_S * 1000) / 1000
        drain = min(MAX_DRAIN_S, max(MIN_DRAIN_S, DRAIN_RTT_FACTOR * slowest))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(pacer.all_in.wait(), max(0.0, min(drain, until - loop.time())))
        return pacer
    finally:
        transport.close()


def check_quality(ctx: Context) -> CheckResult:
    return asyncio.run(_measure(ctx))


async def _measure(ctx: Context) -> CheckResult:
    loop = asyncio.get_running_loop()
    until = loop.time() + max(0.0, ctx.remaining() - RESERVE_S)
    server = ctx.settings.stun[0]
    target = parse_registrar(server)
    port = target.port or DEFAULT_STUN_PORT
    thresholds = {"warn": dict(WARN_AT), "fail": dict(FAIL_AT)}
    details: dict[str, Any] = {"server": server, "thresholds": thresholds}
    address = await resolve_address(target.host, until, ctx.settings.dns_server)
    if address is None:
        hint = f"check the STUN server name {target.host} and this machine's DNS"
        return CheckResult(
            Status.SKIP, f"not measured: {target.host} does not resolve", details, hint
        )
    count = min(PACKETS, int((until - loop.time() - MIN_DRAIN_S) / INTERVAL_S))
    if count < MIN_PACKETS:
        hint = "re-run with a larger --timeout"
        return CheckResult(Status.ERROR, "not enough time left to measure", details, hint)
    pacer = await _exchange((address, port), count, until)
    sent = len(pacer.sent)
    if not pacer.arrivals:
        why = "refused it (ICMP)" if pacer.refused else f"answered none of {sent} requests"
        hint = f"allow outbound UDP {port} to {target.host} (net.stun shows whether it answers)"
        details.update(sent=sent, received=0)
        return CheckResult(Status.SKIP, f"not measured: {server} {why}", details, hint)
    f = figures(sent, pacer.arrivals, pacer.duplicates)
    details.update(asdict(f))
    details["rtt_series_ms"] = rtt_series(sent, pacer.arrivals)
    status, crossed = judge(f)
    details["crossed"] = crossed
    summary = (
        f"{f.sent} STUN requests to {server} every {INTERVAL_S * 1000:.0f} ms: "
        f"RTT {f.rtt_ms['min']:.1f}/{f.rtt_ms['avg']:.1f}/{f.rtt_ms['max']:.1f} ms "
        f"(min/avg/max, p95 {f.rtt_ms['p95']:.1f}), jitter {f.jitter_ms:.1f} ms, "
        f"loss {f.loss_pct:g} % ({f.received}/{f.sent} answered), {f.reordered} reordered, "
        f"MOS {f.mos:.2f} (R {f.r_factor:g})"
    )
    if status is Status.PASS:
        return CheckResult(status, summary, details)
    hint = f"move to a wired network, or ask IT to check the path to {target.host}: " + ", ".join(
        crossed
    )
    return CheckResult(status, summary, details, hint)
