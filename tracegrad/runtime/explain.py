"""``compiled.explain(*args)``: what compile did for one signature."""
from __future__ import annotations

from ..ir.graph import PHASES
from .outputs import signature_text


class ExplainReport:
    """What compile did for one signature: stages, source, guards, breaks, timings."""

    def __init__(self, cf, entry):
        self.function = cf.name
        self.graph_breaks = list(cf.graph_breaks)
        self.recompiles = list(cf.recompile_reasons)
        self.stages = {}
        self.source = ""
        self.guards = []
        self.timings = {}
        self.placement = None  # on a mesh: its text, the inputs' shardings, the collectives
        self.shardings = []
        self.collectives = {}
        self.eager_reason = entry.eager_reason if entry else "not compiled"
        self.counts = counts_text(cf)
        self.phases = []
        if entry is not None and entry.trace is not None:
            if entry.lowered is None:
                entry.build()
            for name, g, _ in entry.stages:
                self.stages[name] = g
            self.stages["final"] = entry.final
            self.source = entry.lowered.source
            sig = [f"{p}: {signature_text(s)}"
                   for p, s in zip(entry.paths, entry.key[0], strict=False)]
            self.guards = sig + [f"grad mode enabled == {entry.key[1]}"]
            if entry.key[2]:
                self.guards.append("arguments sharing memory "
                                   f"(position, first position): {entry.key[2]}")
            self.guards += [ln for g in entry.guards for ln in g.text().split("\n")]
            if entry.placement is not None:
                from .sharding import report
                self.placement = repr(entry.placement)
                self.shardings, self.collectives = report(entry)
            self.timings = {"trace": entry.timings.get("trace", 0.0)}
            for name, _g, dt in entry.stages[1:]:
                self.timings[name] = dt
            self.timings["codegen"] = entry.timings.get("codegen", 0.0)
            self.phases = phase_table(entry.stages + [("final", entry.final, 0.0)])
            if "xla_first_call" in entry.timings:
                self.timings["xla_first_call"] = entry.timings["xla_first_call"]

    def __str__(self):
        lines = [f"tracegrad.compile report for {self.function}", f"  {self.counts}"]
        if self.eager_reason and not self.stages:
            lines.append(f"  runs eagerly: {self.eager_reason}")
        if self.graph_breaks:
            lines.append("  graph breaks:")
            lines += [f"    {site}: {reason}" for site, reason in self.graph_breaks]
        if self.recompiles:
            lines.append("  recompiles:")
            lines += [f"    {r}" for r in self.recompiles]
        if self.stages:
            lines.append("  stages (equations):")
            lines += [f"    {n:<20} {len(g.eqns):>6}" for n, g in self.stages.items()]
            lines.append("  phases (equations per stage; trace ms: the eager run while tracing):")
            lines += ["    " + ln for ln in self.phases]
            lines.append("  guards:")
            lines += [f"    {g}" for g in self.guards]
            if self.placement is not None:
                lines.append(f"  shardings ({self.placement}):")
                lines += [f"    {s}" for s in self.shardings]
                lines.append("  collectives (XLA's compiled module):")
                lines += [f"    {n:<20} {k:>6}" for n, k in self.collectives.items()]
            lines.append("  timings:")
            lines += [f"    {n:<20} {t * 1e3:9.3f} ms" for n, t in self.timings.items()]
            lines.append("  final graph:")
            lines += ["    " + ln for ln in str(self.stages["final"]).splitlines()]
        return "\n".join(lines)


def counts_text(cf) -> str:
    """What calls did, honestly: traces run, programs compiled (and built), signatures that
    run eagerly, and calls of each kind."""
    entries = list(cf._cache.values())
    programs = sum(1 for e in entries if e.trace is not None)
    eager = len(entries) - programs
    return (f"{cf.traces} trace(s), {programs} compiled program(s)"
            + (f", {eager} signature(s) running eagerly (graph break or side effect)"
               if eager else "")
            + f"; calls: {cf.traces} traced, {cf.compiled_calls} compiled, "
            f"{cf.eager_calls} eager")


def phase_table(stages) -> list[str]:
    """Equations per phase (NOTE: [Phases] in ir/graph.py) after each stage that changes
    them (traced, autodiff, final), and the tracing time spent in each phase."""
    from ..ir.inspect import eqn_phase
    picked = [(n, g) for n, g, _ in stages if n in ("traced", "autodiff", "final")]
    if not picked:
        return []
    seconds = picked[0][1].meta.get("phase_seconds", {})
    counts = []
    for _, g in picked:
        c: dict = {}
        for e in g.eqns:
            p = eqn_phase(g, e)
            c[p] = c.get(p, 0) + 1
        counts.append(c)
    used = [p for p in PHASES if any(p in c for c in counts) or seconds.get(p)]
    head = f"{'phase':<10}" + "".join(f"{n:>10}" for n, _ in picked) + f"{'trace ms':>10}"
    rows = [head]
    for p in used:
        t = seconds.get(p)
        rows.append(f"{p:<10}" + "".join(f"{c.get(p, 0):>10}" for c in counts)
                    + (f"{t * 1e3:>10.2f}" if t is not None else f"{'-':>10}"))
    return rows
