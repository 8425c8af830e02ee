"""Pictures for the HTML report, as inline SVG strings: the run's SIP exchange as a ladder
diagram (`ladder`), the microphone's level meter (`level_meter`) and the quality sample's
RTT/jitter chart (`quality_chart`). Each is a pure function of the JSON report and returns ""
when the report holds nothing for it.

Hand-written SVG, no library: no Python library draws SIP ladders (sngrep and HOMER draw them
in their own UIs); pygal would draw the chart but loads its tooltips' JavaScript from a CDN
unless told not to and would be a new dependency of a CLI meant to install light; matplotlib
costs tens of MB and most of a second of import for two small charts. A line chart and two
bars are a few dozen SVG elements. The SVG has no script, no href, no url(): it prints, and it
scales (viewBox, width 100%). Colours are attributes, so a picture reads the same anywhere.

Only what the report already holds is drawn, neutralised and escaped; the ladder's messages
come from the checks' evidence (diag/render/exchange.py), never from a SIP trace.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from diag.render.exchange import Message, build_ladder, details_of
from diag.render.safe import neutralise

GREEN, GREY, AMBER, RED, INK, BLUE = (
    "#176d1a",
    "#5f6368",
    "#b26a00",
    "#b00020",
    "#1f1f1f",
    "#1a56a6",
)
FONT = "font-family='system-ui,sans-serif'"
MAX_MESSAGES = 80  # a longer ladder is cut, and says so
# What audio.input judges levels against (checks/audio/input.py); reports written before it
# recorded `details.thresholds` are drawn against these.
SILENT_RMS_DBFS, CLIP_DBFS, CLIP_WARN_RATIO = -70.0, -0.01, 0.01


def _t(value: Any, limit: int = 80) -> str:
    """Text from the report, neutralised, shortened and escaped."""
    text = neutralise("" if value is None else str(value))
    return escape(text if len(text) <= limit else text[: max(1, limit - 1)] + "…")


def code_colour(code: int | None) -> str:
    """2xx green, 1xx grey, a 401/407 challenge amber, 3xx-6xx red; a request (None) ink."""
    if code is None:
        return INK
    if code in (401, 407):
        return AMBER
    return GREEN if 200 <= code < 300 else GREY if code < 200 else RED


# ---- the ladder

LADDER_W, GUTTER, TOP = 760, 64, 86
ROW, CAUSE_ROW, BAND = 30, 13, 24


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _ms(value: float) -> str:
    return f"+{value:,.0f} ms" if value >= 10 else f"+{_num(value)} ms"


def _arrow(check: str, m: Message, x1: float, x2: float, y: float, nat_x: float | None) -> str:
    colour = code_colour(m.code)
    dash = " stroke-dasharray='5 4'" if m.inferred else ""
    head = 8 if x2 > x1 else -8
    span = abs(x2 - x1)
    label = _t(m.label, max(6, int(span / 6.3)))
    code = "" if m.code is None else str(m.code)
    method = "" if m.code is not None else _t(m.label.split(" ")[0])
    parts = [
        f"<g class='ladder-message{' ladder-inferred' if m.inferred else ''}' "
        f"data-check='{_t(check)}' data-code='{code}' data-method='{method}' "
        f"data-from='{_t(m.src)}' "
        f"data-to='{_t(m.dst)}'><title>{_t(m.label, 300)}"
        f"{' (inferred from the answer)' if m.inferred else ''}</title>",
        f"<line x1='{x1:.1f}' y1='{y}' x2='{x2 - head:.1f}' y2='{y}' stroke='{colour}' "
        f"stroke-width='1.6'{dash}/>",
        f"<polygon points='{x2:.1f},{y} {x2 - head:.1f},{y - 4} {x2 - head:.1f},{y + 4}' "
        f"fill='{colour}'/>",
        f"<text x='{(x1 + x2) / 2:.1f}' y='{y - 5}' text-anchor='middle' font-size='11' "
        f"fill='{colour}' font-weight='{600 if m.code else 400}'>{label}</text>",
    ]
    if m.via_nat and nat_x is not None and min(x1, x2) < nat_x < max(x1, x2):
        parts.append(
            f"<circle class='ladder-nat-hop' cx='{nat_x:.1f}' cy='{y}' r='3.5' fill='{AMBER}'/>"
        )
    parts.append("</g>")
    notes = [(f"no answer: {m.lost}", "ladder-lost")] if m.lost else []
    notes += [(f"↳ {c}", "ladder-cause") for c in m.causes]
    for i, (text, cls) in enumerate(notes):
        parts.append(
            f"<text class='{cls}' x='{(x1 + x2) / 2:.1f}' y='{y + 13 + i * CAUSE_ROW}' "
            f"text-anchor='middle' font-size='10.5' font-weight='600' fill='{RED}'>"
            f"{_t(text, max(8, int(span / 5.8)))}</text>"
        )
    return "".join(parts)


def ladder(report: Mapping[str, Any]) -> str:
    """The run's SIP exchanges as a ladder diagram (svg#sip-ladder), or ""."""
    model = build_ladder(report)
    groups = [g for g in model.groups if g.messages]
    if not groups:
        return ""
    cols = model.columns()
    step = (LADDER_W - 4 - GUTTER) / len(cols)
    x = {key: GUTTER + (i + 0.5) * step for i, (key, _, _) in enumerate(cols)}
    box = min(step - 8, 170)
    body: list[str] = []
    y = TOP
    starts = [g.start for g in groups if g.start]
    t0 = min(starts) if starts else None
    drawn = 0
    for g in groups:
        if drawn >= MAX_MESSAGES:
            break
        when = ""
        if g.start and t0:
            offset = (g.start - t0).total_seconds() * 1000
            when = f" · {g.start.strftime('%H:%M:%S.%f')[:-3]} UTC ({_ms(offset)})"
        body.append(
            f"<g class='ladder-group' data-check='{_t(g.check)}'>"
            f"<rect x='4' y='{y}' width='{LADDER_W - 8}' height='{BAND - 6}' rx='3' "
            "fill='#eef1f5'/>"
            f"<text x='10' y='{y + 13}' font-size='11' fill='{INK}'><tspan font-weight='600'>"
            f"{_t(g.check)}</tspan> · {_t(g.title, 70)}{_t(when)}</text></g>"
        )
        y += BAND
        shown = -math.inf  # times only go forward: a later one measured from an unknown send
        for m in g.messages:  # (a retransmission, our second request) is left out
            if drawn >= MAX_MESSAGES or m.src not in x or m.dst not in x:
                continue
            y += 16
            at = (
                (g.start - t0).total_seconds() * 1000 + m.at_ms
                if m.at_ms is not None and g.start and t0
                else None
            )
            if at is not None and at >= shown:
                shown = at
                body.append(
                    f"<text class='ladder-time' x='6' y='{y + 4}' font-size='10' "
                    f"fill='{GREY}'>{_ms(at)}</text>"
                )
            body.append(_arrow(g.check, m, x[m.src], x[m.dst], y, x.get("nat")))
            y += ROW - 16 + CAUSE_ROW * (len(m.causes) + bool(m.lost))
            drawn += 1
    total = sum(len(g.messages) for g in groups)
    if drawn < total:
        y += 14
        body.append(
            f"<text x='{LADDER_W / 2}' y='{y}' text-anchor='middle' font-size='11' "
            f"fill='{GREY}'>… {total - drawn} more messages not drawn</text>"
        )
    height = y + 12
    head = []
    for key, title, sub in cols:
        cx = x[key]
        head.append(
            f"<g class='ladder-column' data-column='{_t(key.split(' ')[0])}' "
            f"data-address='{_t(sub)}'><title>{_t(title)}: {_t(sub, 200)}</title>"
            f"<line x1='{cx:.1f}' y1='50' x2='{cx:.1f}' y2='{height - 4}' stroke='#9aa0a6' "
            f"stroke-dasharray='3 4'/>"
            f"<rect x='{cx - box / 2:.1f}' y='8' width='{box:.1f}' height='42' rx='4' "
            f"fill='#f6f8fa' stroke='#9aa0a6'/>"
            f"<text x='{cx:.1f}' y='25' text-anchor='middle' font-size='11.5' "
            f"font-weight='600' fill='{INK}'>{_t(title, int(box / 6.6))}</text>"
            f"<text x='{cx:.1f}' y='41' text-anchor='middle' font-size='10' fill='{GREY}'>"
            f"{_t(sub, int(box / 5.6))}</text></g>"
        )
    legend = (
        f"<text x='6' y='68' font-size='10' fill='{GREY}'>"
        + (
            f"times: ms since {t0.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC"
            if t0
            else "no timestamps in this report"
        )
        + f" · <tspan fill='{GREEN}'>2xx</tspan> <tspan fill='{GREY}'>1xx</tspan> "
        f"<tspan fill='{AMBER}'>401/407 challenge</tspan> <tspan fill='{RED}'>4xx-6xx</tspan>"
        " · dashed: inferred from the answer</text>"
    )
    return (
        f"<svg id='sip-ladder' viewBox='0 0 {LADDER_W} {height}' width='100%' role='img' "
        f"aria-label='SIP ladder diagram' {FONT}>{''.join(head)}{legend}{''.join(body)}</svg>"
    )


# ---- the microphone's level meter

METER_W, METER_FLOOR = 720, -100.0


def level_meter(report: Mapping[str, Any]) -> str:
    """audio.input's RMS and peak against its silence and clipping thresholds
    (svg#level-meter), or "" when no level was measured."""
    d = details_of(report, "audio.input")
    if not isinstance(d.get("rms_dbfs"), int | float) or not isinstance(
        d.get("peak_dbfs"), int | float
    ):
        return ""
    limits = d.get("thresholds") or {}
    silent = float(limits.get("silent_rms_dbfs", SILENT_RMS_DBFS))
    clip = float(limits.get("clip_dbfs", CLIP_DBFS))
    warn_ratio = float(limits.get("clip_warn_ratio", CLIP_WARN_RATIO))
    x0, x1 = 110.0, METER_W - 30.0

    def x(dbfs: float) -> float:
        return x0 + (min(0.0, max(METER_FLOOR, dbfs)) - METER_FLOOR) / -METER_FLOOR * (x1 - x0)

    ratio = float(d.get("clipping_ratio") or 0.0)
    rms, peak = float(d["rms_dbfs"]), float(d["peak_dbfs"])
    bars = (
        ("rms", "RMS", rms, AMBER if rms < silent or d.get("digital_silence") else GREEN, 24),
        ("peak", "Peak", peak, RED if peak >= clip and ratio > warn_ratio else BLUE, 58),
    )
    parts = [
        f"<rect x='{x0}' y='18' width='{x(silent) - x0:.1f}' height='72' fill='#eceff1'/>",
        f"<text x='{(x0 + x(silent)) / 2:.1f}' y='100' text-anchor='middle' font-size='10' "
        f"fill='{GREY}'>too quiet</text>",
    ]
    for kind, name, value, colour, y in bars:
        end = max(1.0, x(value) - x0)
        inside = x(value) > x1 - 90  # a long bar carries its value inside, right-aligned
        tx, anchor, ink = (x(value) - 6, "end", "#fff") if inside else (x(value) + 6, "start", INK)
        parts.append(
            f"<g class='meter-bar' data-kind='{kind}' data-dbfs='{_num(value)}'>"
            f"<text x='{x0 - 8}' y='{y + 16}' text-anchor='end' font-size='12' fill='{INK}'>"
            f"{name}</text><rect x='{x0}' y='{y}' width='{end:.1f}' "
            f"height='24' rx='2' fill='{colour}'/>"
            f"<text x='{tx:.1f}' y='{y + 16}' text-anchor='{anchor}' font-size='12' "
            f"font-weight='600' fill='{ink}'>{_num(value)} dBFS</text></g>"
        )
    for kind, value, text, colour in (
        ("silence", silent, f"silence: RMS < {silent:g} dBFS", GREY),
        ("clipping", clip, f"clipping ≥ {clip:g} dBFS", RED),
    ):
        anchor = "end" if kind == "clipping" else "middle"
        parts.append(
            f"<g class='meter-threshold' data-kind='{kind}' data-dbfs='{value:g}'>"
            f"<line x1='{x(value):.1f}' y1='12' x2='{x(value):.1f}' y2='92' stroke='{colour}' "
            f"stroke-width='2' stroke-dasharray='5 3'/><text x='{x(value):.1f}' y='10' "
            f"text-anchor='{anchor}' font-size='10.5' fill='{colour}'>{_t(text)}</text></g>"
        )
    for tick in range(int(METER_FLOOR), 1, 10):
        parts.append(
            f"<line x1='{x(tick):.1f}' y1='104' x2='{x(tick):.1f}' y2='109' stroke='{GREY}'/>"
            f"<text x='{x(tick):.1f}' y='121' text-anchor='middle' font-size='10' "
            f"fill='{GREY}'>{tick}</text>"
        )
    note = f"dBFS · clipped samples {ratio:.1%} (warns above {warn_ratio:.0%})"
    if d.get("digital_silence"):
        note += " · digital silence: every sample was zero"
    parts.append(
        f"<line x1='{x0}' y1='104' x2='{x1}' y2='104' stroke='{GREY}'/>"
        f"<text x='{x0}' y='140' font-size='11' fill='{INK}'>{_t(note, 120)}</text>"
    )
    return (
        f"<svg id='level-meter' viewBox='0 0 {METER_W} 150' width='100%' role='img' "
        f"aria-label='Microphone level meter' {FONT}>{''.join(parts)}</svg>"
    )


# ---- the quality sample's RTT/jitter chart

CHART_W, CHART_H = 720, 250
PLOT = (60.0, 40.0, CHART_W - 20.0, 200.0)  # left, top, right, bottom


def running_jitter(rtts: Sequence[float | None]) -> list[float | None]:
    """RFC 3550's estimator (J += (|D| - J) / 16) after each answered probe, in probe order;
    None where a probe got no answer (net.quality's figure is its last value)."""
    out: list[float | None] = []
    jitter, previous = 0.0, None
    for rtt in rtts:
        if rtt is None:
            out.append(None)
            continue
        if previous is not None:
            jitter += (abs(rtt - previous) - jitter) / 16
        previous = rtt
        out.append(round(jitter, 3))
    return out


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at or above value."""
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def quality_chart(report: Mapping[str, Any]) -> str:
    """net.quality's RTT and running jitter per probe, lost probes marked (svg#quality-chart),
    or "" when the report has no per-probe series."""
    d = details_of(report, "net.quality")
    series = d.get("rtt_series_ms")
    if not isinstance(series, list) or not any(isinstance(v, int | float) for v in series):
        return ""
    rtts: list[float | None] = [float(v) if isinstance(v, int | float) else None for v in series]
    jitter = running_jitter(rtts)
    warn = (d.get("thresholds") or {}).get("warn") or {}
    top = _nice_ceiling(max(1.0, *(v for v in rtts + jitter if v is not None)) * 1.1)
    left, up, right, bottom = PLOT
    step = (right - left) / max(1, len(rtts) - 1)

    def px(i: int) -> float:
        return left + i * step

    def py(ms: float) -> float:
        return bottom - min(ms, top) / top * (bottom - up)

    parts = []
    steps = 4 if round(top / 10 ** math.floor(math.log10(top))) == 2 else 5  # round ticks
    for i in range(steps + 1):
        ms = top * i / steps
        parts.append(
            f"<line x1='{left}' y1='{py(ms):.1f}' x2='{right}' y2='{py(ms):.1f}' "
            f"stroke='#e0e0e0'/><text x='{left - 6}' y='{py(ms) + 4:.1f}' text-anchor='end' "
            f"font-size='10' fill='{GREY}'>{_num(ms)} ms</text>"
        )
    for name, key, colour in (("RTT", "rtt_ms", BLUE), ("jitter", "jitter_ms", AMBER)):
        limit = warn.get(key)
        if isinstance(limit, int | float) and limit <= top:
            parts.append(
                f"<g class='chart-threshold' data-series='{name.lower()}'><line x1='{left}' "
                f"y1='{py(limit):.1f}' x2='{right}' y2='{py(limit):.1f}' stroke='{colour}' "
                f"stroke-dasharray='6 4'/><text x='{right}' y='{py(limit) - 4:.1f}' "
                f"text-anchor='end' font-size='10' fill='{colour}'>{name} warns above "
                f"{_num(limit)} ms</text></g>"
            )
    for name, values, colour in (("rtt", rtts, BLUE), ("jitter", jitter, AMBER)):
        runs: list[list[str]] = [[]]
        for i, v in enumerate(values):
            if v is None:
                runs.append([])
            else:
                runs[-1].append(f"{px(i):.1f},{py(v):.1f}")
        for run in runs:
            if len(run) > 1:
                parts.append(
                    f"<polyline points='{' '.join(run)}' fill='none' stroke='{colour}' "
                    f"stroke-width='1.6'/>"
                )
        parts += [
            f"<circle class='chart-point' data-series='{name}' data-probe='{i}' "
            f"data-ms='{_num(v)}' cx='{px(i):.1f}' cy='{py(v):.1f}' r='2.4' fill='{colour}'/>"
            for i, v in enumerate(values)
            if v is not None
        ]
    lost = [i for i, v in enumerate(rtts) if v is None]
    parts += [
        f"<text class='chart-loss' data-probe='{i}' x='{px(i):.1f}' y='{bottom + 4:.1f}' "
        f"text-anchor='middle' font-size='13' font-weight='700' fill='{RED}'>×</text>"
        for i in lost
    ]
    answered = len(rtts) - len(lost)
    summary = (
        f"{len(rtts)} probes to {d.get('server', '?')}: RTT avg "
        f"{_num(float((d.get('rtt_ms') or {}).get('avg', 0.0)))} ms, jitter "
        f"{_num(float(d.get('jitter_ms') or 0.0))} ms, loss {_num(float(d.get('loss_pct') or 0))} %"
        f" ({answered}/{len(rtts)} answered)"
        + (f", MOS {d['mos']:.2f}" if isinstance(d.get("mos"), int | float) else "")
    )
    parts.append(
        f"<line x1='{left}' y1='{bottom}' x2='{right}' y2='{bottom}' stroke='{GREY}'/>"
        f"<text x='{left}' y='16' font-size='11.5' fill='{INK}'>{_t(summary, 140)}</text>"
        f"<text x='{left}' y='32' font-size='10.5'><tspan fill='{BLUE}'>● RTT</tspan>"
        f"<tspan fill='{AMBER}' dx='12'>● jitter (RFC 3550, running)</tspan>"
        f"<tspan fill='{RED}' dx='12'>× no answer</tspan></text>"
        f"<text x='{(left + right) / 2}' y='{bottom + 28}' text-anchor='middle' "
        f"font-size='10.5' fill='{GREY}'>probe (one every 20 ms), 0 to {len(rtts) - 1}</text>"
    )
    return (
        f"<svg id='quality-chart' viewBox='0 0 {CHART_W} {CHART_H}' width='100%' role='img' "
        f"aria-label='RTT and jitter chart' {FONT}>{''.join(parts)}</svg>"
    )
