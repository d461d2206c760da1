"""boltgrad.nn: layers and functions for building networks (``boltgrad.nn.functional`` is torch's ``F``)."""

from . import functional

__all__ = ["functional"]

# ---- modules (Module, containers, layers) and init ----
from . import init
from .containers import ModuleDict, ModuleList, Sequential
from .layers import Dropout, Embedding, Flatten, Identity, Linear, Unflatten
from .module import Module, Parameter
from .modules_activation import (
    ELU,
    GELU,
    Hardswish,
    LeakyReLU,
    LogSoftmax,
    Mish,
    ReLU,
    ReLU6,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from .modules_attention import MultiheadAttention, TransformerEncoderLayer
from .modules_conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, ConvTranspose2d, MaxPool2d
from .modules_loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss
from .modules_norm import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm, RMSNorm
from .modules_rnn import GRU, LSTM, RNN

__all__ += [
    "init", "Module", "Parameter", "Sequential", "ModuleList", "ModuleDict",
    "Linear", "Identity", "Flatten", "Unflatten", "Embedding", "Dropout",
    "Conv1d", "Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d",
    "BatchNorm1d", "BatchNorm2d", "LayerNorm", "RMSNorm", "GroupNorm",
    "MultiheadAttention", "TransformerEncoderLayer", "RNN", "LSTM", "GRU",
    "ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU", "SiLU", "Mish", "Hardswish", "Sigmoid", "Tanh", "Softplus",
    "Softmax", "LogSoftmax",
    "CrossEntropyLoss", "NLLLoss", "MSELoss", "L1Loss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss",
]  # fmt: skip
