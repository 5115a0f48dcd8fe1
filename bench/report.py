"""What the bench prints at the end: a table of the figures, the goals the project tracks,
then one `BENCH <name> <value> <unit>` line per figure, last, for scripts to read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# Every figure, in the order it is printed, with its unit (the names and units are fixed:
# a script reads the BENCH lines).
UNITS: dict[str, str] = {
    "rq_jobs": "jobs/s",
    "rq_hop": "ms/hop",
    "fanout1000_engine": "nodes/s",
    "chain200_engine": "ms/hop",
    "fanout10000_engine": "nodes/s",
    "chain2000_engine": "ms/hop",
    "define10000": "s",
    "status10000": "ms",
    "http500_engine": "s",
    "http500_serial": "s",
    "trigger_engine": "triggers/s",
    "bare_insert": "req/s",
    "backlog_p99": "s",
    "worker_rss_growth": "%",
}


@dataclass
class Report:
    """The figures measured so far, and notes on how each was obtained (shown in the table)."""

    values: dict[str, float] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def record(self, name: str, value: float, note: str = "") -> None:
        self.values[name] = value
        if note:
            self.note(name, note)

    def note(self, name: str, text: str) -> None:
        self.notes.setdefault(name, []).append(text)

    def lines(self) -> list[str]:
        """The table, the goals, then the BENCH lines."""
        out = [f"{'figure':<20} {'value':>12} {'unit':<11} notes"]
        for name, unit in UNITS.items():
            if name not in self.values:
                continue
            notes = self.notes.get(name, [])
            out.append(f"{name:<20} {_number(self.values[name]):>12} {unit:<11} {notes[0] if notes else ''}".rstrip())
            out += [f"{'':<45} {more}" for more in notes[1:]]
        out += ["", "goals:"]
        out += [f"  {text:<52} {shown:<28} {'met' if met else 'NOT MET'}" for text, shown, met in self.goals()]
        out.append("")
        out += [
            f"BENCH {name} {_number(self.values[name])} {unit}" for name, unit in UNITS.items() if name in self.values
        ]
        return out

    def goals(self) -> list[tuple[str, str, bool]]:
        """Each goal whose figures were measured: its statement, the value it is judged on, met or not."""
        v = self.values
        checks: list[tuple[str, tuple[str, ...], Callable[[], tuple[str, bool]]]] = [
            (
                "fanout1000_engine >= 3 x rq_jobs",
                ("fanout1000_engine", "rq_jobs"),
                lambda: _times(v["fanout1000_engine"] / v["rq_jobs"], lambda r: r >= 3),
            ),
            (
                "chain200_engine <= 0.6 x rq_hop",
                ("chain200_engine", "rq_hop"),
                lambda: _times(v["chain200_engine"] / v["rq_hop"], lambda r: r <= 0.6),
            ),
            (
                "http500_serial / http500_engine >= 10",
                ("http500_serial", "http500_engine"),
                lambda: _times(v["http500_serial"] / v["http500_engine"], lambda r: r >= 10),
            ),
            (
                "trigger_engine >= 0.5 x bare_insert",
                ("trigger_engine", "bare_insert"),
                lambda: _times(v["trigger_engine"] / v["bare_insert"], lambda r: r >= 0.5),
            ),
            (
                "fanout10000_engine >= 0.9 x fanout1000_engine",
                ("fanout10000_engine", "fanout1000_engine"),
                lambda: _times(v["fanout10000_engine"] / v["fanout1000_engine"], lambda r: r >= 0.9),
            ),
            (
                "define10000 < 1 s and status10000 < 50 ms",
                ("define10000", "status10000"),
                lambda: (
                    f"{_number(v['define10000'])} s, {_number(v['status10000'])} ms",
                    v["define10000"] < 1 and v["status10000"] < 50,
                ),
            ),
            (
                "worker RSS growth <= 20%",
                ("worker_rss_growth",),
                lambda: (f"{_number(v['worker_rss_growth'])} %", v["worker_rss_growth"] <= 20),
            ),
        ]
        return [(text, *check()) for text, needs, check in checks if all(n in v for n in needs)]


def _times(ratio: float, met: Callable[[float], bool]) -> tuple[str, bool]:
    return f"{ratio:.2f} x", met(ratio)


def _number(value: float) -> str:
    """Plain decimal notation (no exponent), enough digits for small figures."""
    return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4g}" if abs(value) >= 0.001 else f"{value:.6f}"
