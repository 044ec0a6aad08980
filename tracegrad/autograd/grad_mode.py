"""Grad mode: no_grad, enable_grad, set_grad_enabled, inference_mode (thread-local)."""
from __future__ import annotations

import functools
import inspect
import threading


class _State(threading.local):
    enabled = True


_state = _State()


def is_grad_enabled() -> bool:
    return _state.enabled


class _GradModeContext:
    """Base: a context manager that is also a decorator (with or without parentheses)."""

    _mode = True

    def __new__(cls, func=None, *args, **kwargs):
        self = super().__new__(cls)
        if callable(func) and cls is not set_grad_enabled:
            # used bare as ``@no_grad``
            self.__init__()
            return self(func)
        return self

    def __enter__(self):
        self._prev = _state.enabled
        _state.enabled = self._mode

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def clone(self):
        return self.__class__()

    def __call__(self, func):
        if inspect.isgeneratorfunction(func):
            @functools.wraps(func)
            def gen_wrapper(*args, **kwargs):
                gen = func(*args, **kwargs)
                try:
                    with self.clone():
                        response = gen.send(None)
                    while True:
                        try:
                            request = yield response
                        except GeneratorExit:
                            gen.close()
                            raise
                        with self.clone():
                            response = gen.send(request)
                except StopIteration as stop:  # the wrapped generator finished
                    return stop.value
            return gen_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.clone():
                return func(*args, **kwargs)
        return wrapper


class no_grad(_GradModeContext):
    """Disable gradient recording inside the block or the decorated function.

    >>> import tracegrad as tg
    >>> x = tg.ones(2, requires_grad=True)
    >>> with tg.no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """

    _mode = False


class enable_grad(_GradModeContext):
    """Enable gradient recording inside a no_grad region."""

    _mode = True


class inference_mode(_GradModeContext):
    """Like no_grad (tracegrad has no separate inference tensors)."""

    def __init__(self, mode: bool = True):
        self._mode = not mode

    def clone(self):
        return self.__class__(not self._mode)


class set_grad_enabled(_GradModeContext):
    """Set grad mode now; as a context manager, restore the old mode on exit.

    Works as a plain call (``set_grad_enabled(False)``), as a context manager and as
    a decorator.
    """

    def __init__(self, mode: bool):
        self._prev = _state.enabled
        self._mode = bool(mode)
        _state.enabled = self._mode

    def __enter__(self):
        pass

    def __exit__(self, *exc):
        _state.enabled = self._prev
        return False

    def clone(self):
        return _Setter(self._mode)

    def __call__(self, func):
        _state.enabled = self._prev
        return _GradModeContext.__call__(self, func)


class _Setter(_GradModeContext):
    def __init__(self, mode):
        self._mode = mode

    def clone(self):
        return _Setter(self._mode)
