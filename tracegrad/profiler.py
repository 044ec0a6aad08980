"""``tracegrad.profiler``: the ``torch.profiler`` spelling of the autograd profiler.

>>> import tracegrad as tg
>>> with tg.profiler.profile(activities=[tg.profiler.ProfilerActivity.CPU]) as prof:
...     y = tg.ones(3) * 2
>>> [e.key for e in prof.key_averages()]
['aten::mul']

Only CPU activity is recorded; schedules, memory and stacks are accepted and ignored.
"""
from __future__ import annotations

import enum

from .autograd import profiler as _autograd_profiler
from .autograd.profiler import EventList, record_function

__all__ = ["profile", "record_function", "ProfilerActivity", "EventList"]


class ProfilerActivity(enum.Enum):
    CPU = "CPU"
    CUDA = "CUDA"


class profile(_autograd_profiler.profile):
    """``torch.profiler.profile``: a context manager recording CPU ops."""

    def __init__(self, *, activities=None, schedule=None, on_trace_ready=None,
                 record_shapes: bool = False, profile_memory: bool = False,
                 with_stack: bool = False, with_flops: bool = False,
                 with_modules: bool = False, experimental_config=None, **_ignored):
        super().__init__(record_shapes=record_shapes)
        self.on_trace_ready = on_trace_ready

    def start(self) -> None:
        self.__enter__()

    def stop(self) -> None:
        self.__exit__(None, None, None)

    def step(self) -> None:
        """Schedules are not supported: a no-op."""

    def __exit__(self, *exc):
        r = super().__exit__(*exc)
        if self.on_trace_ready is not None and exc[0] is None:
            self.on_trace_ready(self)
        return r
