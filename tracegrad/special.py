"""``torch.special``: the special functions under their scipy-style names.

>>> import tracegrad as tg
>>> tg.special.xlogy(tg.tensor([0.0, 2.0]), tg.tensor([0.0, 3.0]))
tensor([0.0000, 2.1972])
"""
from __future__ import annotations

from . import functions as _F

xlogy = _F.xlogy
erf = _F.erf
erfc = _F.erfc
erfinv = _F.erfinv
expit = _F.sigmoid
logit = _F.logit
exp2 = _F.exp2
expm1 = _F.expm1
log1p = _F.log1p
sinc = _F.sinc
digamma = psi = _F.digamma
gammaln = _F.lgamma
polygamma = _F.polygamma
round = _F.round
logsumexp = _F.logsumexp
softmax = _F.softmax
log_softmax = _F.log_softmax

__all__ = ["xlogy", "erf", "erfc", "erfinv", "expit", "logit", "exp2", "expm1", "log1p", "sinc",
           "digamma", "psi", "gammaln", "polygamma", "round", "logsumexp", "softmax",
           "log_softmax"]
