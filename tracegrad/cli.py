"""The ``tracegrad`` command: run a script, then show what ``tracegrad.compile`` did.

    tracegrad dump train.py [--stage NAME] [--fn NAME] [--format text|dot|json]
                            [--hlo] [-o DIR] [-- SCRIPT ARGS]
    tracegrad explain train.py [-- SCRIPT ARGS]
    tracegrad viz train.py -o report.html [-- SCRIPT ARGS]

The script runs as ``__main__`` (with ``sys.argv`` set to it and its
arguments); every ``CompiledFunction`` made while it runs is kept, and each of
its compilations (cache entries) is read afterwards: the graph after every
stage (traced, each pass, final), the generated jax source and, with
``--hlo``, the XLA text. When a compiled function's outputs need gradients,
its compiled backward graph is shown as a second part, ``backward``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import runpy
import sys
import time
import traceback

from . import _checkout  # noqa: F401  (NOTE: [Checkout folder])

# the module that keeps the registry of compiled functions
compile_mod = importlib.import_module("tracegrad.runtime.function")


class CliError(Exception):
    """A problem worth one line and a non-zero exit, not a traceback."""


# ---- running the script -------------------------------------------------------

def run_script(path: str, args: list[str]) -> list:
    """Run ``path`` as ``__main__``; return the CompiledFunctions it made."""
    if not os.path.isfile(path):
        raise CliError(f"no such script: {path}")
    kept: list = []
    old_argv, old_path, old_retained = sys.argv, list(sys.path), compile_mod._retained
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    compile_mod._retained = kept
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise CliError(f"{path} exited with status {e.code}") from None
    except Exception:
        traceback.print_exc()
        raise CliError(f"{path} raised {sys.exc_info()[0].__name__} (traceback above)") from None
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
        compile_mod._retained = old_retained
    if not kept:
        raise CliError(f"{path} ran but made no tracegrad.compile function; nothing to show")
    return kept


class Compilation:
    """One cache entry of a compiled function, with its graphs per part and stage."""

    def __init__(self, cf, index: int, entry):
        from .passes import run_pipeline
        self.cf = cf
        self.index = index
        self.entry = entry
        self.parts: dict = {}
        self.sources = None
        self.source = ""
        self.eager_reason = entry.eager_reason
        if entry.trace is None:
            return
        if entry.lowered is None:
            entry.build()
        self.sources = entry.trace.sources
        stages = [(n, g, dt) for n, g, dt in entry.stages]
        stages.append(("final", entry.final, entry.timings.get("codegen", 0.0)))
        self.parts["forward"] = stages
        self.source = entry.lowered.source
        bwd = entry.trace.autograd
        if bwd is not None:
            g = bwd.graph.replace(meta={**bwd.graph.meta, "all_backward": True, "stage": "traced"})
            final, bstages = run_pipeline(g)
            self.parts["backward"] = bstages + [("final", final, 0.0)]

    def shardings(self) -> str:
        """On a mesh: each input's placement and the collectives XLA's module runs."""
        from .runtime.sharding import report
        lines, counts = report(self.entry)
        return "\n".join([f"placement: {self.entry.placement!r}", "inputs:",
                          *[f"  {ln}" for ln in lines], "collectives (XLA's compiled module):",
                          *[f"  {n}: {k}" for n, k in counts.items()]])

    @property
    def label(self) -> str:
        return f"{self.cf.name}[{self.index}]"

    def hlo(self, part: str = "forward") -> str:
        import jax

        from .codegen.jax_lower import lower
        final = self.parts[part][-1][1]
        lowered = self.entry.lowered if part == "forward" else lower(final)
        specs = [jax.ShapeDtypeStruct(v.shape, v.dtype.np) for v in final.inputs]
        return lowered.hlo(specs)


def compilations(cfs, fn: str | None = None) -> list[Compilation]:
    out = []
    names = set()
    for cf in cfs:
        names.add(cf.name)
        if fn is not None and cf.name != fn:
            continue
        entries = [e for cache in cf._caches.values() for e in cache.values()]
        for i, entry in enumerate(entries):  # (every placement's: one cache per mesh)
            out.append(Compilation(cf, i, entry))
    if fn is not None and fn not in names:
        raise CliError(f"no compiled function named {fn!r}; the script compiled: "
                       f"{', '.join(sorted(names))}")
    return out


# ---- dump -----------------------------------------------------------------------

def _render(graph, fmt: str, sources) -> str:
    from .ir import inspect
    if fmt == "dot":
        return inspect.to_dot(graph, sources)
    if fmt == "json":
        return json.dumps(inspect.to_json(graph, sources), indent=1)
    return str(graph)


_EXT = {"text": "py", "dot": "dot", "json": "json"}


def cmd_dump(ns) -> int:
    cfs = run_script(ns.script, ns.script_args)
    comps = compilations(cfs, ns.fn)
    written = []
    stage_names = set()

    def emit(name: str, header: str, text: str):
        if ns.output:
            path = os.path.join(ns.output, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text if text.endswith("\n") else text + "\n")
            written.append(path)
        else:
            print(f"# ==== {header} ====")
            print(text)

    if ns.output:
        os.makedirs(ns.output, exist_ok=True)
    for c in comps:
        if not c.parts:
            emit(f"{c.cf.name}.{c.index}.eager.txt", f"{c.label}: runs eagerly",
                 f"runs eagerly: {c.eager_reason}")
            continue
        for part, stages in c.parts.items():
            for stage, graph, _ in stages:
                stage_names.add(stage)
                if ns.stage and stage != ns.stage:
                    continue
                emit(f"{c.cf.name}.{c.index}.{part}.{stage}.{_EXT[ns.format]}",
                     f"{c.label} {part} {stage}", _render(graph, ns.format, c.sources
                                                           if part == "forward" else None))
        if not ns.stage or ns.stage in ("jax", "source"):
            emit(f"{c.cf.name}.{c.index}.jax.py", f"{c.label} jax source", c.source)
        if c.entry.placement is not None and (not ns.stage or ns.stage == "shardings"):
            emit(f"{c.cf.name}.{c.index}.shardings.txt", f"{c.label} shardings",
                 c.shardings())
        if ns.hlo:
            for part in c.parts:
                emit(f"{c.cf.name}.{c.index}.{part}.hlo.txt", f"{c.label} {part} XLA HLO",
                     c.hlo(part))
    if ns.stage and ns.stage not in stage_names | {"jax", "source", "shardings"}:
        raise CliError(f"no stage named {ns.stage!r}; stages: {', '.join(_ordered(stage_names))}")
    if not comps:
        raise CliError("the compiled functions were never called, so nothing was traced")
    if ns.output:
        print(f"wrote {len(written)} files to {ns.output}", file=sys.stderr)
    return 0


def _ordered(names) -> list:
    from .passes import PIPELINE
    order = ["traced"] + [n for n, _ in PIPELINE] + ["final"]
    return sorted(names, key=lambda n: order.index(n) if n in order else len(order))


# ---- explain ------------------------------------------------------------------------

def explain_text(cfs) -> str:
    from .runtime.explain import counts_text, phase_table
    lines = []
    for cf in cfs:
        lines.append(f"{cf.name}: {counts_text(cf)}")
        if cf.recompile_reasons:
            lines.append("  recompiled because:")
            lines += [f"    - {r}" for r in cf.recompile_reasons]
        if cf.graph_breaks:
            lines.append("  graph breaks:")
            lines += [f"    - {site}: {reason}" for site, reason in cf.graph_breaks]
        for c in compilations([cf]):
            lines.append(f"  [{c.index}] " + ("runs eagerly: " + c.eager_reason if not c.parts
                                              else _signature(c)))
            for part, stages in c.parts.items():
                lines.append(f"      {part:<8} {'stage':<20} {'eqns':>6} {'nodes':>6} {'ms':>9}")
                for stage, graph, seconds in stages:
                    label = "final (codegen)" if stage == "final" else stage
                    lines.append(f"      {'':<8} {label:<20} {len(graph.eqns):>6} "
                                 f"{len(graph.inputs) + len(graph.eqns):>6} "
                                 f"{seconds * 1e3:>9.3f}")
            if "forward" in c.parts:
                lines.append("      phases (equations per stage; trace ms: the eager run while "
                             "tracing):")
                lines += ["        " + ln for ln in phase_table(c.parts["forward"])]
            t = c.entry.timings
            if c.parts:
                extra = ", ".join(f"{k} {t[k] * 1e3:.2f} ms" for k in ("codegen", "xla_first_call")
                                  if k in t)
                if extra:
                    lines.append(f"      {extra}")
    return "\n".join(lines)


def _signature(c: Compilation) -> str:
    from .runtime.outputs import signature_text
    parts = [f"{p}: {signature_text(s)}"
             for p, s in zip(c.entry.paths, c.entry.key[0], strict=False)]
    return "; ".join(parts) + f"; grad mode {c.entry.key[1]}"


def cmd_explain(ns) -> int:
    cfs = run_script(ns.script, ns.script_args)
    print(explain_text(cfs))
    return 0


# ---- viz --------------------------------------------------------------------------------

def panels(c: Compilation, part: str, hlo: bool = True) -> dict:
    """What the viewer's side panes show for one compilation: counts, guards, graph
    breaks and recompiles of its function, the jax source and the HLO text."""
    from .runtime.explain import counts_text
    cf = c.cf
    out = {"counts": counts_text(cf),
           "recompiles": list(cf.recompile_reasons),
           "breaks": [f"{site}: {reason}" for site, reason in cf.graph_breaks],
           "guards": [], "jax": "", "hlo": ""}
    if c.parts:
        out["guards"] = [_signature(c)] + [ln for g in c.entry.guards
                                           for ln in g.text().split("\n")]
        if part == "forward":
            out["jax"] = c.source
        if hlo:
            try:
                out["hlo"] = c.hlo(part)
            except Exception as e:  # (the report is still worth writing without it)
                out["hlo"] = f"(no HLO: {type(e).__name__}: {e})"
    return out


def _view_title(c: Compilation, part: str, stages) -> str:
    """``train_step[0]: forward + backward + optimizer`` (the phases the program holds), or
    ``model[0] backward`` for the compiled backward of a function whose outputs need
    gradients."""
    if part == "backward":
        return f"{c.label} backward"
    from .ir.graph import PHASES
    present = {e.phase for e in stages[0][1].eqns}
    return f"{c.label}: " + " + ".join(p for p in PHASES if p in present)


def cmd_viz(ns) -> int:
    from .viz import View, render_html
    cfs = run_script(ns.script, ns.script_args)
    views = []
    for c in compilations(cfs, ns.fn):
        if not c.parts:  # a graph break or side effect: the function runs eagerly
            views.append(View(f"{c.label} (runs eagerly)", [], None,
                              f"{c.cf.name}: compilation {c.index} runs eagerly",
                              panels(c, "forward"), eager=c.eager_reason or "not compiled"))
            continue
        for part, stages in c.parts.items():
            info = f"{c.cf.name}: compilation {c.index}, {part}; " + _signature(c)
            if part == "forward" and c.entry.placement is not None:
                info += "; " + c.shardings().replace("\n", "; ")
            views.append(View(_view_title(c, part, stages), stages,
                              c.sources if part == "forward" else None, info,
                              panels(c, part, not ns.no_hlo)))
    for cf in cfs:  # traced but never cached (each call made new state): say so
        if not cf._cache and (ns.fn is None or cf.name == ns.fn):
            from .runtime.explain import counts_text
            why = "; ".join(cf.recompile_reasons) or "never called"
            views.append(View(f"{cf.name} (not compiled)", [], None, counts_text(cf),
                              {"counts": counts_text(cf), "recompiles": cf.recompile_reasons,
                               "breaks": [f"{s}: {r}" for s, r in cf.graph_breaks]},
                              eager=f"no compiled program: {why}"))
    if not views:
        raise CliError("no compiled graphs to draw (every call ran eagerly or none was traced)")
    t0 = time.perf_counter()
    text = render_html(views, title=f"tracegrad: {os.path.basename(ns.script)}")
    with open(ns.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {ns.output} ({len(text) / 1e3:.0f} kB, {len(views)} graph(s), "
          f"{time.perf_counter() - t0:.2f} s)", file=sys.stderr)
    return 0


# ---- entry point ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracegrad", description="See what tracegrad.compile did "
                                "to the functions a script compiles.")
    sub = p.add_subparsers(dest="command", required=True)

    def script_cmd(name, help_text):
        s = sub.add_parser(name, help=help_text, description=help_text)
        s.add_argument("script", help="the Python script to run")
        s.add_argument("--fn", help="only the compiled function with this name")
        return s

    d = script_cmd("dump", "print or write the graph at every stage, and the jax source")
    d.add_argument("--stage", help="only this stage (traced, a pass name, final, or jax)")
    d.add_argument("--format", choices=["text", "dot", "json"], default="text")
    d.add_argument("--hlo", action="store_true", help="also the XLA HLO text")
    d.add_argument("-o", "--output", help="write one file per function and stage here")
    d.set_defaults(run=cmd_dump)
    e = script_cmd("explain", "compilations and why, graph breaks, node counts and time per stage")
    e.set_defaults(run=cmd_explain)
    v = script_cmd("viz", "write one self-contained HTML file that draws the graphs")
    v.add_argument("-o", "--output", default="tracegrad-report.html")
    v.add_argument("--no-hlo", action="store_true",
                   help="leave the XLA HLO text out (it is lowered for each program)")
    v.set_defaults(run=cmd_viz)
    return p


def main(argv: list[str] | None = None) -> int:
    """``tracegrad COMMAND SCRIPT.py [options] [-- script args]``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args = []
    if "--" in argv:
        i = argv.index("--")
        argv, script_args = argv[:i], argv[i + 1:]
    ns = build_parser().parse_args(argv)
    ns.script_args = script_args
    try:
        return ns.run(ns)
    except CliError as e:
        print(f"tracegrad {ns.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
