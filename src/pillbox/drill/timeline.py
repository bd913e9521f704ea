"""A timeline picture of a drill (SVG, no dependencies): web successes and failures per
bucket, good messages acked, crashes, the injection and the quarantine."""

from __future__ import annotations

from html import escape

from pillbox.drill.runner import Outcome

WIDTH, HEIGHT, LEFT, RIGHT, TOP = 960, 300, 60, 20, 40
BUCKET_S = 0.5


def svg(outcome: Outcome, title: str) -> str:
    start, end = outcome.started_at, outcome.ended_at
    span = max(end - start, 1.0)
    plot_w = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + plot_w * (t - start) / span

    buckets = int(span / BUCKET_S) + 1
    ok, bad, acked = [0] * buckets, [0] * buckets, [0] * buckets
    for probe in outcome.traffic.probes:
        (ok if probe.ok else bad)[min(buckets - 1, int((probe.at - start) / BUCKET_S))] += 1
    for delivery in outcome.good:
        if delivery.finished_at and delivery.state == "acked":
            acked[min(buckets - 1, max(0, int((delivery.finished_at - start) / BUCKET_S)))] += 1
    peak = max([*ok, *bad, *acked, 1])

    def lane(y0: float, h: float, values: list[int], colour: str) -> str:
        return "".join(
            f'<rect x="{x(start + i * BUCKET_S):.1f}" y="{y0 + h - h * v / peak:.1f}" '
            f'width="{plot_w * BUCKET_S / span:.1f}" height="{h * v / peak:.1f}" '
            f'fill="{colour}"/>' for i, v in enumerate(values) if v)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'font-family="sans-serif" font-size="12">',
             '<rect width="100%" height="100%" fill="white"/>',
             f'<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
             f'<text x="8" y="{TOP + 45}">web ok</text>', lane(TOP, 80, ok, "#2e9d4b"),
             f'<text x="8" y="{TOP + 120}">web fail</text>', lane(TOP + 90, 40, bad, "#d62728"),
             f'<text x="8" y="{TOP + 185}">acked</text>', lane(TOP + 140, 60, acked, "#1f77b4")]
    parts.append(_vline(x(outcome.injected_at), "#ff7f0e", "injected", 0))
    for crash in outcome.crashes:
        parts.append(f'<circle cx="{x(crash.at):.1f}" cy="{TOP + 215}" r="5" fill="black">'
                     f'<title>{escape(crash.summary)}</title></circle>')
    poison = outcome.poison
    if poison is not None and poison.state == "dead" and poison.finished_at:
        parts.append(_vline(x(poison.finished_at), "#9467bd", "quarantined", 14))
    parts.append(f'<text x="8" y="{TOP + 219}">crashes</text>')
    for second in range(0, int(span) + 1, max(1, int(span // 10))):
        parts.append(f'<text x="{x(start + second):.1f}" y="{HEIGHT - 10}" '
                     f'text-anchor="middle">{second}s</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _vline(px: float, colour: str, label: str, dy: int) -> str:
    return (f'<line x1="{px:.1f}" y1="{TOP}" x2="{px:.1f}" y2="{TOP + 225}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="4 3"/><text x="{px + 4:.1f}" '
            f'y="{TOP + 10 + dy}" fill="{colour}" font-weight="bold">{label}</text>')
