"""The profiler: CPU time and call counts of every op, forward and backward.

>>> import tracegrad as tg
>>> x = tg.ones(2, 3, requires_grad=True)
>>> with tg.autograd.profiler.profile() as prof:
...     (x * 2).sum().backward()
>>> sorted(e.key for e in prof.key_averages())
['MulBackward0', 'SumBackward0', 'aten::mul', 'aten::sum']

Forward events are named after the primitive, with PyTorch's ``aten::`` prefix
and, where they differ, PyTorch's op names (``reshape`` shows as ``aten::view``)
so a table reads like PyTorch's; backward events are the grad_fn names
(``MulBackward0``). ``record_function("label")`` adds a range of your own; a
``tracegrad.compile``d function shows as one ``tracegrad::compiled::<name>`` event
per call, with ``tracegrad::compile`` (passes and codegen) and
``tracegrad::xla_first_call`` (XLA compilation) as events of their own.

Events nest: an event's self time excludes the events inside it (a backward
node's VJP rule runs ops of its own). Recording hooks into ``tensor.apply`` and
the engine through ``_op_hooks``; when no profiler runs they cost one flag check.
"""
from __future__ import annotations

import functools
import json
import os
import threading
import time

from ._op_hooks import refresh, state

__all__ = ["profile", "record_function", "EventList", "FunctionEvent", "FunctionEventAvg"]

_NS = time.perf_counter_ns

# tracegrad primitive -> the name PyTorch gives the op, where they differ
_TORCH_NAMES = {"reshape": "view", "broadcast_to": "expand", "cast": "to", "copy": "clone",
                "pow_scalar": "pow", "rpow_scalar": "pow", "getitem": "index",
                "index_put": "index_put_", "bce_with_logits":
                "binary_cross_entropy_with_logits", "full": "full", "random": "random_",
                "log_softmax": "_log_softmax", "softmax": "_softmax", "amax": "amax",
                "norm": "linalg_vector_norm", "scatter_add": "scatter_add",
                "index_add": "index_add", "maximum": "maximum", "minimum": "minimum"}


class _Recorder:
    """Collects events while a profile is active: a stack of open ranges."""

    def __init__(self):
        self.events: list = []   # (name, start_ns, dur_ns, self_ns, depth)
        self.stack: list = []    # open ranges: [name, start_ns, child_ns]
        self._names: dict = {}

    def op_name(self, prim) -> str:
        n = self._names.get(prim)
        if n is None:
            n = self._names[prim] = "aten::" + _TORCH_NAMES.get(prim.name, prim.name)
        return n

    def push(self, name: str) -> list:
        frame = [name, _NS(), 0]
        self.stack.append(frame)
        return frame

    def pop(self, frame: list) -> None:
        end = _NS()
        name, start, child = frame
        dur = end - start
        if self.stack and self.stack[-1] is frame:
            self.stack.pop()
        if self.stack:
            self.stack[-1][2] += dur
        self.events.append((name, start, dur, dur - child, len(self.stack)))

    def add(self, name: str, start_ns: int, end_ns: int) -> None:
        """A range measured elsewhere, that ended just now inside the open range."""
        dur = end_ns - start_ns
        if self.stack:
            self.stack[-1][2] += dur
        self.events.append((name, start_ns, dur, dur, len(self.stack)))


def _format_time(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:.3f}s"
    if us >= 1e3:
        return f"{us / 1e3:.3f}ms"
    return f"{us:.3f}us"


class FunctionEvent:
    """One recorded range (times in microseconds)."""

    count = 1

    def __init__(self, id, name, start_us, cpu_time_total, self_cpu_time_total, depth,
                 thread):
        self.id = id
        self.name = self.key = name
        self.start_us = start_us
        self.cpu_time_total = cpu_time_total
        self.self_cpu_time_total = self_cpu_time_total
        self.depth = depth
        self.thread = thread

    @property
    def end_us(self) -> float:
        return self.start_us + self.cpu_time_total

    @property
    def cpu_time(self) -> float:
        return self.cpu_time_total

    @property
    def self_cpu_time(self) -> float:
        return self.self_cpu_time_total

    def __repr__(self):
        return (f"<FunctionEvent id={self.id} name={self.name} "
                f"cpu_time={_format_time(self.cpu_time_total)} "
                f"self_cpu_time={_format_time(self.self_cpu_time_total)}>")


class FunctionEventAvg:
    """Events with the same name, summed (``key_averages``)."""

    def __init__(self, key):
        self.key = self.name = key
        self.count = 0
        self.cpu_time_total = 0.0
        self.self_cpu_time_total = 0.0

    def add(self, e) -> FunctionEventAvg:
        self.count += e.count
        self.cpu_time_total += e.cpu_time_total
        self.self_cpu_time_total += e.self_cpu_time_total
        return self

    @property
    def cpu_time(self) -> float:
        return self.cpu_time_total / self.count if self.count else 0.0

    @property
    def self_cpu_time(self) -> float:
        return self.self_cpu_time_total / self.count if self.count else 0.0

    def __repr__(self):
        return (f"<FunctionEventAvg key={self.key} self_cpu_time="
                f"{_format_time(self.self_cpu_time_total)} cpu_time="
                f"{_format_time(self.cpu_time_total)} count={self.count}>")


_HEADERS = ("Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg",
            "# of Calls")
_COLUMN = 12
_SPACING = "  "


class EventList(list):
    """A list of events, with PyTorch's summary table and chrome trace export."""

    @property
    def self_cpu_time_total(self) -> float:
        return sum(e.self_cpu_time_total for e in self)

    def key_averages(self, group_by_input_shape: bool = False,
                     group_by_stack_n: int = 0) -> EventList:
        groups: dict = {}
        for e in self:
            avg = groups.get(e.key)
            if avg is None:
                avg = groups[e.key] = FunctionEventAvg(e.key)
            avg.add(e)
        return EventList(groups.values())

    def total_average(self) -> FunctionEventAvg:
        total = FunctionEventAvg("Total")
        for e in self:
            total.add(e)
        return total

    def table(self, sort_by: str | None = None, row_limit: int = 100,
              max_name_column_width: int = 55, header: str | None = None,
              top_level_events_only: bool = False, **_ignored) -> str:
        """The summary table, laid out as PyTorch lays it out.

        ``sort_by``: an event attribute, largest first (``"self_cpu_time_total"``,
        ``"cpu_time_total"``, ``"cpu_time"``, ``"count"``); ``row_limit``: rows shown
        (-1 or 0: all).
        """
        events = list(self)
        if top_level_events_only:
            events = [e for e in events if getattr(e, "depth", 0) == 0]
        if sort_by is not None:
            events.sort(key=lambda e: getattr(e, sort_by.replace("cuda", "cpu")), reverse=True)
        total = self.self_cpu_time_total
        name_width = min(max((len(e.key) for e in self), default=4) + 4, max_name_column_width)
        widths = (name_width,) + (_COLUMN,) * (len(_HEADERS) - 1)
        rule = "".join("-" * w + _SPACING for w in widths)

        def row(cells):
            return "".join(c.rjust(w) + _SPACING for c, w in zip(cells, widths, strict=False))

        def pct(x):
            return f"{100.0 * x / total:.2f}%" if total else "0.00%"

        lines = [rule, row(_HEADERS), rule]
        if header is not None:
            lines = ["=" * len(rule), header] + lines
        if row_limit and row_limit > 0:
            events = events[:row_limit]
        for e in events:
            name = e.key if len(e.key) <= name_width - 4 else e.key[:name_width - 7] + "..."
            lines.append(row((name, pct(e.self_cpu_time_total),
                              _format_time(e.self_cpu_time_total), pct(e.cpu_time_total),
                              _format_time(e.cpu_time_total), _format_time(e.cpu_time),
                              str(e.count))))
        lines.append(rule)
        lines.append(f"Self CPU time total: {_format_time(total)}")
        return "\n".join(lines) + "\n"

    def __str__(self):
        return self.table()

    def export_chrome_trace(self, path: str) -> None:
        """Write the events as Chrome trace JSON (chrome://tracing, Perfetto)."""
        pid = os.getpid()
        events = [{"name": e.name, "ph": "X", "cat": "cpu_op", "ts": e.start_us,
                   "dur": e.cpu_time_total, "pid": pid, "tid": e.thread,
                   "args": {"self_cpu_us": e.self_cpu_time_total}}
                  for e in self if isinstance(e, FunctionEvent)]
        with open(path, "w") as f:
            json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)


class profile:
    """Record the CPU time of every op run inside ``with profile() as prof:``.

    PyTorch's arguments are accepted; CUDA, shapes, memory, flops and stacks are
    not recorded (tracegrad runs on the CPU).
    """

    def __init__(self, enabled: bool = True, *, use_cuda: bool = False, use_device=None,
                 record_shapes: bool = False, with_flops: bool = False,
                 profile_memory: bool = False, with_stack: bool = False,
                 with_modules: bool = False, use_kineto: bool = False, use_cpu: bool = True,
                 experimental_config=None, acc_events: bool = False,
                 custom_trace_id_callback=None):
        self.enabled = enabled
        self.record_shapes = record_shapes
        self.function_events: EventList | None = None
        self._recorder: _Recorder | None = None
        self._prev = None
        self._t0 = 0

    def __enter__(self):
        if not self.enabled:
            return self
        if state.profiler is not None:
            raise RuntimeError("Profiler is already enabled: profiles cannot be nested")
        self._recorder = _Recorder()
        self._t0 = _NS()
        state.profiler = self._recorder
        refresh()
        return self

    def __exit__(self, *exc):
        if not self.enabled:
            return False
        state.profiler = None
        refresh()
        tid = threading.get_ident() % (1 << 31)
        evs = sorted(self._recorder.events, key=lambda e: (e[1], e[4]))
        self.function_events = EventList(
            FunctionEvent(i, name, (start - self._t0) / 1e3, dur / 1e3, self_ns / 1e3, depth,
                          tid)
            for i, (name, start, dur, self_ns, depth) in enumerate(evs))
        self._recorder = None
        return False

    def _check_finished(self) -> EventList:
        if self.function_events is None:
            raise RuntimeError("Profiler didn't finish running")
        return self.function_events

    def events(self) -> EventList:
        return self._check_finished()

    def key_averages(self, group_by_input_shape: bool = False,
                     group_by_stack_n: int = 0) -> EventList:
        return self._check_finished().key_averages(group_by_input_shape, group_by_stack_n)

    def table(self, *args, **kwargs) -> str:
        return self._check_finished().table(*args, **kwargs)

    def total_average(self) -> FunctionEventAvg:
        return self._check_finished().total_average()

    @property
    def self_cpu_time_total(self) -> float:
        return self._check_finished().self_cpu_time_total

    def export_chrome_trace(self, path: str) -> None:
        self._check_finished().export_chrome_trace(path)

    def __str__(self):
        return str(self._check_finished())


class record_function:
    """A named range in the profile: a context manager or a decorator.

    >>> import tracegrad as tg
    >>> with tg.autograd.profiler.profile() as prof:
    ...     with tg.autograd.profiler.record_function("my_block"):
    ...         y = tg.ones(3) * 2
    >>> [e.key for e in prof.key_averages()]
    ['my_block', 'aten::mul']
    """

    def __init__(self, name: str, args: str | None = None):
        self.name = name
        self._frame = None
        self._rec = None

    def __enter__(self):
        self._rec = state.profiler
        if self._rec is not None:
            self._frame = self._rec.push(self.name)
        return self

    def __exit__(self, *exc):
        if self._rec is not None:
            self._rec.pop(self._frame)
            self._rec = None
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with record_function(self.name):
                return fn(*args, **kwargs)
        return wrapper


def _record_range(name: str, start_s: float, end_s: float) -> None:
    """Add a range timed with time.perf_counter (used by tracegrad.compile)."""
    rec = state.profiler
    if rec is not None:
        rec.add(name, int(start_s * 1e9), int(end_s * 1e9))
