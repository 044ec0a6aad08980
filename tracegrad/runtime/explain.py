"""``compiled.explain(*args)``: what compile did for one signature."""
from __future__ import annotations

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
            self.guards += [g.text() for g in entry.guards]
            if entry.placement is not None:
                from .sharding import report
                self.placement = repr(entry.placement)
                self.shardings, self.collectives = report(entry)
            self.timings = {"trace": entry.timings.get("trace", 0.0)}
            for name, _g, dt in entry.stages[1:]:
                self.timings[name] = dt
            self.timings["codegen"] = entry.timings.get("codegen", 0.0)
            if "xla_first_call" in entry.timings:
                self.timings["xla_first_call"] = entry.timings["xla_first_call"]

    def __str__(self):
        lines = [f"tracegrad.compile report for {self.function}"]
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
