"""boltgrad.optim: optimizers, learning-rate schedules and gradient clipping, as torch.optim.

Every step is lazy and fused: the updates of all parameters are realized together, and values that change
between steps (learning rate, bias corrections) are kernel variables, so the kernels compile once. SGD, Adam and
AdamW keep a group's parameters in one flat buffer and update them as one tensor (Adam: four kernels per group);
other optimizers write one kernel per tensor. ``Optimizer`` is the base a new optimizer subclasses (it writes
only ``update``).
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .muon import Muon
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Muon", "lr_scheduler", "clip_grad_norm_", "clip_grad_value_"]
