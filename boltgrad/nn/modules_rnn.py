"""Recurrent layers: RNN, LSTM and GRU, with torch's parameter names, gate order and shapes.

Each layer and direction has ``weight_ih_l{k}`` (gates * hidden, input), ``weight_hh_l{k}`` (gates * hidden,
hidden), ``bias_ih_l{k}`` and ``bias_hh_l{k}``; the reverse direction adds ``_reverse``. Gates are stacked in
torch's order: LSTM (input, forget, cell, output), GRU (reset, update, new). Every weight starts
U(-1/sqrt(hidden_size), 1/sqrt(hidden_size)).

The input's projection for the whole sequence is one matmul per gate; the recurrence is a Python loop over time
steps, each adding a little lazy graph (a few kernels per step: gate pre-activations and the recurrent state are
kept in buffers, so no kernel recomputes the history).
"""

from __future__ import annotations

import math
from typing import Any

from ..tensor import Tensor
from ..tensor_reduce import cat, stack
from . import functional as F
from . import init
from .module import Module, empty_parameter


def _materialized(x: Tensor) -> Tensor:
    """A gate's pre-activation or a state in a buffer of its own.

    Several kernels read a gate (the state update and, in the backward pass, the gradients of both weights), and a
    state is read by the next step: without buffers each kernel would recompute its inputs with their whole
    elementwise history, back to the first step, which makes kernels large and slow to compile.
    """
    return x.contiguous()


class _RNNBase(Module):
    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: str | None = None, dtype: Any = None):  # fmt: skip
        super().__init__()
        name = type(self).__name__
        if not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a probability in [0, 1], got {dropout}")
        if hidden_size <= 0 or num_layers <= 0:
            raise ValueError(f"{name}: hidden_size ({hidden_size}) and num_layers ({num_layers}) must be positive")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout, self.bidirectional = bias, batch_first, dropout, bidirectional
        directions = 2 if bidirectional else 1
        rows = self._gates * hidden_size
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                setattr(self, f"weight_ih_l{layer}{suffix}", empty_parameter(rows, layer_input, dtype=dtype,
                                                                             device=device))  # fmt: skip
                setattr(self, f"weight_hh_l{layer}{suffix}", empty_parameter(rows, hidden_size, dtype=dtype,
                                                                             device=device))  # fmt: skip
                if bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", empty_parameter(rows, dtype=dtype, device=device))
                    setattr(self, f"bias_hh_l{layer}{suffix}", empty_parameter(rows, dtype=dtype, device=device))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        with init.batched():
            for p in self.parameters():
                init.uniform_(p, -bound, bound)

    def _cell(self, x_proj: list[Tensor], h_proj: list[Tensor], h: Tensor, c: Tensor | None) -> Any:
        """One time step: the input's and the state's projections per gate, and the state -> the new (h, c)."""
        raise NotImplementedError

    def _initial_state(self, hx: Any, batch: int, ref: Tensor) -> tuple[Tensor, Tensor | None]:
        """(h0, c0), each (num_layers * directions, N, hidden); zeros where not given."""
        shape = (self.num_layers * (2 if self.bidirectional else 1), batch, self.hidden_size)
        zeros = Tensor.zeros(shape, dtype=ref.dtype, device=ref.device)
        return (zeros if hx is None else hx), None

    def forward(self, input: Tensor, hx: Any = None) -> tuple[Tensor, Any]:  # noqa: A002 - torch's name
        name = type(self).__name__
        if input.ndim not in (2, 3):
            raise ValueError(f"{name}: expected a 2-d (unbatched) or 3-d input, got shape {input.shape}")
        unbatched = input.ndim == 2
        x = input.unsqueeze(1) if unbatched else (input.transpose(0, 1) if self.batch_first else input)
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{name}: input has {x.shape[-1]} features, expected input_size={self.input_size}")
        if unbatched and hx is not None:
            hx = tuple(h.unsqueeze(1) for h in hx) if isinstance(hx, tuple) else hx.unsqueeze(1)
        h0, c0 = self._initial_state(hx, x.shape[1], x)  # x: (L, N, input_size)
        directions = 2 if self.bidirectional else 1
        h_last, c_last = [], []
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                k = layer * directions + d
                seq, h, c = self._run_direction(x, layer, suffix, h0[k], None if c0 is None else c0[k], d == 1)
                outputs.append(seq)
                h_last.append(h)
                c_last.append(c)
            x = outputs[0] if directions == 1 else cat(outputs, dim=-1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        out = x.squeeze(1) if unbatched else (x.transpose(0, 1) if self.batch_first else x)
        h_n = stack(h_last)
        state: Any = h_n if c0 is None else (h_n, stack(c_last))
        if unbatched:
            state = state.squeeze(1) if c0 is None else tuple(s.squeeze(1) for s in state)
        return out, state

    def _run_direction(self, x: Tensor, layer: int, suffix: str, h: Tensor, c: Tensor | None,
                       reverse: bool) -> tuple[Tensor, Tensor, Tensor | None]:  # fmt: skip
        """Run one layer in one direction over x (L, N, features) -> (outputs (L, N, hidden), h, c)."""
        # Each gate gets its own slice of the stacked weights, taken once: slicing a (N, gates * hidden) result at
        # every step instead would put a pad per gate and step into the backward pass.
        gates = self._gates
        w_ih = getattr(self, f"weight_ih_l{layer}{suffix}").chunk(gates)
        w_hh = getattr(self, f"weight_hh_l{layer}{suffix}").chunk(gates)
        no_bias = [None] * gates
        b_ih = getattr(self, f"bias_ih_l{layer}{suffix}").chunk(gates) if self.bias else no_bias
        b_hh = getattr(self, f"bias_hh_l{layer}{suffix}").chunk(gates) if self.bias else no_bias
        x_proj = [F.linear(x, w, b) for w, b in zip(w_ih, b_ih)]  # per gate (L, N, hidden), every step at once
        steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
        outputs: list[Tensor] = [None] * x.shape[0]  # type: ignore[list-item]
        for t in steps:
            h_proj = [F.linear(h, w, b) for w, b in zip(w_hh, b_hh)]  # per gate (N, hidden)
            h, c = self._cell([p[t] for p in x_proj], h_proj, h, c)
            outputs[t] = h
        return stack(outputs), h, c

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s


class RNN(_RNNBase):
    """An Elman network: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu, by ``nonlinearity``)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 device: str | None = None, dtype: Any = None):  # fmt: skip
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device,
                         dtype)  # fmt: skip
        self.nonlinearity = nonlinearity

    def _cell(self, x_proj: list[Tensor], h_proj: list[Tensor], h: Tensor, c: Tensor | None) -> Any:
        pre = _materialized(x_proj[0] + h_proj[0])
        return (pre.tanh() if self.nonlinearity == "tanh" else pre.relu()), None


class LSTM(_RNNBase):
    """Long short-term memory: returns (output, (h_n, c_n)); ``hx`` is (h_0, c_0) or None for zeros.

    >>> from boltgrad import nn, Tensor
    >>> out, (h, c) = nn.LSTM(3, 5, batch_first=True)(Tensor.ones(2, 7, 3))
    >>> out.shape, h.shape, c.shape
    ((2, 7, 5), (1, 2, 5), (1, 2, 5))
    """

    _gates = 4

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: str | None = None, dtype: Any = None):  # fmt: skip
        if proj_size:
            raise NotImplementedError("LSTM: proj_size is not supported")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device,
                         dtype)  # fmt: skip

    def _initial_state(self, hx: Any, batch: int, ref: Tensor) -> tuple[Tensor, Tensor | None]:
        if hx is not None:
            if not isinstance(hx, tuple | list) or len(hx) != 2:
                raise TypeError("LSTM: hx must be a tuple (h_0, c_0)")
            return hx[0], hx[1]
        zeros, _ = super()._initial_state(None, batch, ref)
        return zeros, zeros

    def _cell(self, x_proj: list[Tensor], h_proj: list[Tensor], h: Tensor, c: Tensor | None) -> Any:
        i, f, g, o = (_materialized(a + b) for a, b in zip(x_proj, h_proj))  # (N, hidden) each
        c = _materialized(f.sigmoid() * c + i.sigmoid() * g.tanh())
        return o.sigmoid() * c.tanh(), c


class GRU(_RNNBase):
    """Gated recurrent unit: returns (output, h_n).

    n = tanh(x W_in + b_in + r * (h W_hn + b_hn)), h' = (1 - z) * n + z * h, with r and z sigmoid gates.
    """

    _gates = 3

    def _cell(self, x_proj: list[Tensor], h_proj: list[Tensor], h: Tensor, c: Tensor | None) -> Any:
        x_r, x_z, x_n = x_proj
        h_r, h_z, h_n = h_proj
        r = _materialized(x_r + h_r).sigmoid()
        z = _materialized(x_z + h_z).sigmoid()
        n = _materialized(x_n + r * h_n).tanh()
        return _materialized((1 - z) * n + z * h), None
