"""Plot geometry for report.html: map report values to SVG coordinates (templates draw them).

Two kinds of figure: `RatePlot` (per subject, a pooled bar with its interval and one point
with its interval per seed) and `DistributionPlot` (per subject, a box of quartiles with
min-max whiskers and every value as a jittered dot). Jitter is deterministic, so the same
report.json always renders the same HTML.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from audit.probes.results import BehaviourResult, RateEstimate

SUBJECT_ORDER = ("base", "teacher", "student", "control")
SUBJECT_COLOURS = {
    "base": "#6b7280",
    "teacher": "#7c3aed",
    "student": "#dc2626",
    "control": "#2563eb",
}
WIDTH, HEIGHT = 560, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 40
GOLDEN = 0.6180339887


@dataclass(frozen=True)
class Tick:
    """A y-axis tick: pixel position and label."""

    y: float
    label: str


@dataclass(frozen=True)
class Whisker:
    """A point with a vertical interval; `title` is its hover text."""

    x: float
    y: float
    low: float
    high: float
    title: str


@dataclass(frozen=True)
class Bar:
    """A pooled-rate bar from the axis up to `top`, with its interval."""

    x: float
    width: float
    top: float
    interval: Whisker


@dataclass(frozen=True)
class Box:
    """Quartile box (`q1` below `q3` in value, so `q1` has the larger y) and whisker ends."""

    x: float
    width: float
    q1: float
    median: float
    q3: float
    low: float
    high: float


@dataclass(frozen=True)
class Dot:
    """One value of a distribution."""

    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Group:
    """One subject's column: label position, colour and its marks."""

    subject: str
    x: float
    colour: str
    bar: Bar | None = None
    seeds: tuple[Whisker, ...] = ()
    box: Box | None = None
    dots: tuple[Dot, ...] = ()


@dataclass(frozen=True)
class Plot:
    """A figure: size, axis ticks, an optional reference line and one group per subject."""

    title: str
    y_label: str
    width: int
    height: int
    ticks: tuple[Tick, ...]
    groups: tuple[Group, ...]
    axis_y: float
    reference_y: float | None = None
    x0: float = LEFT
    x1: float = WIDTH - RIGHT


@dataclass(frozen=True)
class Scale:
    """Linear map from [lo, hi] to the plot's pixel rows (hi at the top)."""

    lo: float
    hi: float

    def y(self, value: float) -> float:
        span = self.hi - self.lo or 1.0
        clipped = min(max(value, self.lo), self.hi)
        return round(TOP + (self.hi - clipped) / span * (HEIGHT - TOP - BOTTOM), 2)


def _subjects(names: set[str]) -> list[str]:
    known = [s for s in SUBJECT_ORDER if s in names]
    return known + sorted(names - set(SUBJECT_ORDER))


def _centres(count: int) -> tuple[list[float], float]:
    step = (WIDTH - LEFT - RIGHT) / max(count, 1)
    return [round(LEFT + step * (i + 0.5), 2) for i in range(count)], step


def _rate_title(estimate: RateEstimate) -> str:
    who = "pooled" if estimate.seed is None else f"seed {estimate.seed}"
    ci = estimate.interval
    return (
        f"{estimate.subject}, {who}: {estimate.unsafe}/{estimate.n} = {ci.estimate:.1%} "
        f"({ci.level:.0%} CI {ci.low:.1%}-{ci.high:.1%})"
    )


def _whisker(x: float, estimate: RateEstimate, scale: Scale) -> Whisker:
    ci = estimate.interval
    return Whisker(
        x=round(x, 2),
        y=scale.y(ci.estimate),
        low=scale.y(ci.low),
        high=scale.y(ci.high),
        title=_rate_title(estimate),
    )


def rate_plot(result: BehaviourResult) -> Plot:
    """Unsafe rates per subject: pooled bars with intervals and per-seed points beside them."""
    scale = Scale(0.0, 1.0)
    subjects = _subjects({e.subject for e in [*result.pooled, *result.per_seed]})
    centres, step = _centres(len(subjects))
    groups = []
    for subject, centre in zip(subjects, centres, strict=True):
        pooled = next((e for e in result.pooled if e.subject == subject), None)
        seeds = sorted(
            (e for e in result.per_seed if e.subject == subject), key=lambda e: e.seed or 0
        )
        bar_width = step * 0.34
        bar_x = centre - step * 0.2
        bar = None
        if pooled is not None:
            top = scale.y(pooled.interval.estimate)
            bar = Bar(
                round(bar_x - bar_width / 2, 2),
                round(bar_width, 2),
                top,
                _whisker(bar_x, pooled, scale),
            )
        seed_span = step * 0.34
        first = centre + step * 0.06
        gap = seed_span / max(len(seeds) - 1, 1)
        whiskers = tuple(_whisker(first + gap * i, e, scale) for i, e in enumerate(seeds))
        groups.append(
            Group(subject, centre, SUBJECT_COLOURS.get(subject, "#111827"), bar, whiskers)
        )
    ticks = tuple(Tick(scale.y(v), f"{v:.0%}") for v in (0, 0.25, 0.5, 0.75, 1.0))
    return Plot(
        title=f"{result.env}: {result.metric.replace('_', ' ')} ({result.sampling})",
        y_label="unsafe rate",
        width=WIDTH,
        height=HEIGHT,
        ticks=ticks,
        groups=tuple(groups),
        axis_y=scale.y(0.0),
    )


def _nice_step(span: float, count: int = 4) -> float:
    raw = (span or 1.0) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _nice_scale(values: list[float], include_zero: bool) -> tuple[Scale, float]:
    """A scale spanning `values` (and 0 when asked) rounded out to whole tick steps."""
    lo, hi = min(values), max(values)
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    step = _nice_step(hi - lo)
    return Scale(math.floor(lo / step) * step, math.ceil(hi / step) * step), step


def _ticks(scale: Scale, step: float) -> tuple[Tick, ...]:
    count = round((scale.hi - scale.lo) / step)
    return tuple(
        Tick(scale.y(scale.lo + step * i), f"{scale.lo + step * i:.3g}") for i in range(count + 1)
    )


def _box(values: list[float], x: float, width: float, scale: Scale) -> Box:
    if len(values) >= 2:
        q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1 = median = q3 = values[0]
    return Box(
        x=round(x - width / 2, 2),
        width=round(width, 2),
        q1=scale.y(q1),
        median=scale.y(median),
        q3=scale.y(q3),
        low=scale.y(min(values)),
        high=scale.y(max(values)),
    )


def distribution_plot(
    title: str,
    y_label: str,
    values: dict[str, list[float]],
    bounds: tuple[float, float] | None = None,
    reference: float | None = None,
) -> Plot | None:
    """Strip-and-box plot of `values` per subject; None when there is nothing to draw.

    `bounds` fixes the y range (e.g. probabilities in [0, 1]); otherwise it spans the data
    and the `reference` value. A horizontal line marks `reference` when given.
    """
    present = {s: v for s, v in values.items() if v}
    if not present:
        return None
    every = [v for vs in present.values() for v in vs]
    if bounds is None:
        scale, step = _nice_scale(every, include_zero=reference is not None)
    else:
        scale, step = Scale(*bounds), _nice_step(bounds[1] - bounds[0])
    subjects = _subjects(set(present))
    centres, step = _centres(len(subjects))
    groups = []
    for subject, centre in zip(subjects, centres, strict=True):
        data = present[subject]
        spread = step * 0.5
        dots = tuple(
            Dot(
                x=round(centre + ((i * GOLDEN) % 1 - 0.5) * spread, 2),
                y=scale.y(v),
                title=f"{subject}: {v:.3g}",
            )
            for i, v in enumerate(data)
        )
        groups.append(
            Group(
                subject=subject,
                x=centre,
                colour=SUBJECT_COLOURS.get(subject, "#111827"),
                box=_box(data, centre, step * 0.6, scale),
                dots=dots,
            )
        )
    return Plot(
        title=title,
        y_label=y_label,
        width=WIDTH,
        height=HEIGHT,
        ticks=_ticks(scale, step),
        groups=tuple(groups),
        axis_y=HEIGHT - BOTTOM,
        reference_y=None if reference is None else scale.y(reference),
    )
