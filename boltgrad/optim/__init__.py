"""boltgrad.optim: optimizers, learning-rate schedules and gradient clipping, as torch.optim.

Every step is lazy and fused: the updates of all parameters are realized together, one kernel per tensor
written, and values that change between steps (learning rate, bias corrections) are kernel variables, so the
kernels compile once. ``Optimizer`` is the base a new optimizer subclasses (it writes only ``update``).
"""

from . import lr_scheduler
from .adam import Adam, AdamW
from .clip import clip_grad_norm_, clip_grad_value_
from .muon import Muon
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Muon", "lr_scheduler", "clip_grad_norm_", "clip_grad_value_"]
