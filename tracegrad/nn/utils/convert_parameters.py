"""Parameters to one flat vector and back, as ``torch.nn.utils.convert_parameters``."""
from __future__ import annotations

from collections.abc import Iterable

from ... import functions as T
from ...tensor import Tensor

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """The parameters flattened and concatenated, in order (differentiable).

    >>> import tracegrad as tg
    >>> parameters_to_vector([tg.ones(2, 2), tg.zeros(1)])
    tensor([1., 1., 1., 1., 0.])
    """
    return T.cat([p.view(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Slice ``vec`` into consecutive pieces and make each the ``.data`` of a parameter."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {_typename(vec)}")
    pointer = 0
    for param in parameters:
        n = param.numel()
        param.data = vec[pointer:pointer + n].view_as(param).data
        pointer += n


def _typename(obj) -> str:
    module = type(obj).__module__
    name = type(obj).__qualname__
    return name if module in ("builtins", None) else f"{module}.{name}"
