"""All-or-nothing compiled calls: Ctrl-C never lands between dispatch and write-back.

NOTE: [Uninterruptible write-back]. A compiled call donates the buffers of the state
it overwrites, so once XLA has the work the old values are gone; until the call has
pointed every tensor at its new value, the new values exist only in the call's
locals. A KeyboardInterrupt delivered in between would leave parameters whose
buffers were deleted. The first compiled call made on the main thread installs a
SIGINT handler that, inside ``critical()``, only notes the signal; the call raises
KeyboardInterrupt once its state is consistent. Outside, it defers to the handler
it replaced (Python's default raises KeyboardInterrupt at once).
"""
from __future__ import annotations

import signal
import threading

_state = {"depth": 0, "pending": None, "previous": None, "installed": False}


def _handler(signum, frame):
    if _state["depth"]:
        _state["pending"] = (signum, frame)
        return
    prev = _state["previous"]
    if callable(prev):
        return prev(signum, frame)
    raise KeyboardInterrupt


def install() -> None:
    """Install the handler (main thread only; elsewhere signals cannot be handled)."""
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    prev = signal.getsignal(signal.SIGINT)
    if prev in (signal.SIG_IGN, signal.SIG_DFL, None) or prev is _handler:
        return
    _state["previous"] = prev
    signal.signal(signal.SIGINT, _handler)
    _state["installed"] = True


class critical:
    """``with critical():`` a SIGINT waits until the block is done."""

    __slots__ = ()

    def __enter__(self):
        _state["depth"] += 1

    def __exit__(self, *exc):
        _state["depth"] -= 1
        if not _state["depth"] and _state["pending"] is not None:
            signum, frame = _state["pending"]
            _state["pending"] = None
            prev = _state["previous"]
            if callable(prev) and prev is not signal.default_int_handler:
                prev(signum, frame)
            elif exc[0] is None:
                raise KeyboardInterrupt
        return False


CRITICAL = critical()
