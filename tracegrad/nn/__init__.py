"""Neural-network building blocks (``torch.nn``): Module, Parameter, layers and losses.

>>> import tracegrad as tg
>>> net = tg.nn.Sequential(tg.nn.Linear(4, 8), tg.nn.ReLU(), tg.nn.Linear(8, 2))
>>> net(tg.randn(3, 4)).shape
torch.Size([3, 2])
"""
from . import functional, init
from .containers import ModuleList, Sequential
from .layers import (  # structural ops (opsb)
    GELU,
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    BatchNorm1d,
    BatchNorm2d,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    Dropout,
    Embedding,
    EmbeddingBag,
    Flatten,
    Fold,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    MaxUnpool1d,
    MaxUnpool2d,
    MaxUnpool3d,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    Unfold,
    Upsample,
    UpsamplingBilinear2d,
    UpsamplingNearest2d,
)
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss
from .module import Module
from .parameter import Parameter

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "Identity", "Linear", "Embedding",
    "LayerNorm", "Dropout", "Flatten", "ReLU", "GELU", "Sigmoid", "Tanh", "Softmax",
    "LogSoftmax", "LeakyReLU", "MSELoss", "L1Loss", "NLLLoss", "CrossEntropyLoss", "BCELoss",
    "BCEWithLogitsLoss", "Conv1d", "Conv2d", "Conv3d", "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "BatchNorm1d", "BatchNorm2d", "functional", "init",
    "Unfold", "Fold", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Upsample",
    "UpsamplingNearest2d", "UpsamplingBilinear2d", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d",
    "EmbeddingBag",
]
