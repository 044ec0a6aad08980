"""``torch.nn.utils``: gradient clipping and flattening parameters into one vector.

>>> import tracegrad as tg
>>> w = tg.nn.Parameter(tg.ones(4))
>>> w.grad = tg.full((4,), 3.0)
>>> tg.nn.utils.clip_grad_norm_([w], max_norm=1.0)
tensor(6.)
>>> round(w.grad.norm().item(), 4)
1.0
"""
from . import rnn  # rnn: padding and packing sequences (issue 13)
from .clip_grad import (
    clip_grad_norm,
    clip_grad_norm_,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
)
from .convert_parameters import parameters_to_vector, vector_to_parameters
from .spectral_norm import remove_spectral_norm, spectral_norm
from .weight_norm import remove_weight_norm, weight_norm

__all__ = [
    "clip_grad_norm", "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_",
    "get_total_norm", "parameters_to_vector", "vector_to_parameters", "weight_norm",
    "remove_weight_norm", "spectral_norm", "remove_spectral_norm", "rnn",
]
