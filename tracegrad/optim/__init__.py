"""Optimizers (``torch.optim``): SGD, Adam, AdamW and the Optimizer base class.

>>> import tracegrad as tg
>>> net = tg.nn.Linear(2, 1)
>>> opt = tg.optim.Adam(net.parameters(), lr=1e-2)
>>> net(tg.ones(4, 2)).pow(2).mean().backward(); opt.step(); opt.zero_grad()
"""
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]
