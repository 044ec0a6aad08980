"""Optimizers (``torch.optim``): SGD, Adam, AdamW, RMSprop, Adagrad, Adadelta, Adamax,
NAdam, RAdam, ASGD, Rprop, LBFGS, the Optimizer base class, and learning-rate schedulers
(``lr_scheduler``).

>>> import tracegrad as tg
>>> net = tg.nn.Linear(2, 1)
>>> opt = tg.optim.Adam(net.parameters(), lr=1e-2)
>>> net(tg.ones(4, 2)).pow(2).mean().backward(); opt.step(); opt.zero_grad()
"""
from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .asgd import ASGD
from .lbfgs import LBFGS
from .nadam import NAdam
from .optimizer import Optimizer
from .radam import RAdam
from .rmsprop import RMSprop
from .rprop import Rprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta", "Adamax",
           "NAdam", "RAdam", "ASGD", "Rprop", "LBFGS", "lr_scheduler"]
