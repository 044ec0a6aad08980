"""Parameter: a leaf Tensor that a Module registers as one of its weights."""
from __future__ import annotations

from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that is a module's learnable weight (``requires_grad=True`` by default).

    It shares its array with the tensor it wraps, so writes through either one are
    seen by both. Operations on a Parameter return plain Tensors.

    >>> import tracegrad as tg
    >>> tg.nn.Parameter(tg.ones(2))
    Parameter containing:
    tensor([1., 1.], requires_grad=True)
    """

    _is_param = True

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        if data is None:
            from ..functions import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter data must be a Tensor, got {type(data).__name__}")
        p = object.__new__(cls)
        p._data = data._data
        p._vc = data._vc
        p._set_requires_grad(requires_grad)
        return p

    def __init__(self, data: Tensor | None = None, requires_grad: bool = True):
        pass  # all the work is in __new__ (Tensor.__init__ refuses direct construction)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, proto):
        from ..serialization import reduce_parameter  # torch's _rebuild_parameter call
        return reduce_parameter(self)


def _rebuild_parameter(data, requires_grad):
    # (what pickles made before tracegrad.serialization name; kept so they still load)
    return Parameter(Tensor._make(data), requires_grad)
