"""Recurrent and attention layers against torch's with the same weights: outputs and gradients."""

import numpy as np
import pytest
import torch
from nn_oracle import check_module, make_inputs

from boltgrad import Tensor, nn


# Recurrent backward passes compile slowly (seconds per time step, see modules_rnn), so gradients are checked on
# short sequences of one layer, and the deep and bidirectional layouts on forward passes.
@pytest.mark.parametrize(
    "kind, kwargs, shape, grad",
    [
        ("GRU", {"batch_first": True, "bidirectional": True}, (2, 2, 3), False),
        ("RNN", {"nonlinearity": "relu", "bias": False}, (3, 3), True),  # unbatched
        ("LSTM", {"num_layers": 2, "bidirectional": True, "batch_first": True}, (2, 1, 3), False),
    ],
    ids=["gru_bidirectional_batch_first", "rnn_relu_unbatched", "lstm_2_layers_bidirectional"],
)
def test_recurrent(kind, kwargs, shape, grad):
    torch.manual_seed(0)
    theirs, ours = getattr(torch.nn, kind)(3, 4, **kwargs), getattr(nn, kind)(3, 4, **kwargs)
    check_module(theirs, ours, shape, grad=grad, atol=1e-5)


def test_lstm_gradients_with_initial_state():
    torch.manual_seed(0)
    rng = np.random.default_rng(5)
    states = [rng.uniform(-1, 1, (1, 2, 4)).astype(np.float32) for _ in range(2)]

    def run(m, x, h0, c0):
        return m(x, (h0, c0))

    # the weights' gradients; the inputs' would double the kernels to compile
    check_module(torch.nn.LSTM(3, 4), nn.LSTM(3, 4), (2, 2, 3), *states, forward=run, input_grad=False, atol=1e-5)


def test_recurrent_state_dict_layouts():
    for kind in ("LSTM", "GRU", "RNN"):
        kwargs = {"num_layers": 2, "bidirectional": True, "bias": kind != "RNN"}
        want = [(k, tuple(v.shape)) for k, v in getattr(torch.nn, kind)(3, 5, **kwargs).state_dict().items()]
        assert [(k, tuple(v.shape)) for k, v in getattr(nn, kind)(3, 5, **kwargs).state_dict().items()] == want
    out, h = nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True)(Tensor.ones(4, 6, 3))
    assert out.shape == (4, 6, 10) and h.shape == (4, 4, 5)


def _torch_or_ours(value, like):
    if not isinstance(value, np.ndarray):
        return value
    return torch.from_numpy(value) if isinstance(like, torch.Tensor) else Tensor(value)


@pytest.mark.parametrize("case", ["plain", "bool_and_padding_masks", "seq_first_float_mask"])
def test_multihead_attention(case):
    torch.manual_seed(0)
    n, l, s, e, heads = 2, 3, 4, 4, 2
    batch_first = case != "seq_first_float_mask"
    q, kv = ((n, l, e), (n, s, e)) if batch_first else ((l, n, e), (s, n, e))
    options = {}
    if case == "bool_and_padding_masks":
        options["attn_mask"] = np.triu(np.ones((l, s), bool), 2)
        options["key_padding_mask"] = np.array([[False, False, True, False], [False, True, True, False]])
        options["average_attn_weights"] = False
    elif case == "seq_first_float_mask":
        options["attn_mask"] = np.random.default_rng(1).uniform(-1, 0, (n * heads, l, s)).astype(np.float32)

    def run(m, q_in, k_in, v_in):
        return m(q_in, k_in, v_in, **{k: _torch_or_ours(v, q_in) for k, v in options.items()})

    check_module(torch.nn.MultiheadAttention(e, heads, batch_first=batch_first),
                 nn.MultiheadAttention(e, heads, batch_first=batch_first), q, kv, kv, forward=run)  # fmt: skip


def test_multihead_attention_other_dims_and_no_weights():
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(4, 2, kdim=3, vdim=5, batch_first=True)
    ours = nn.MultiheadAttention(4, 2, kdim=3, vdim=5, batch_first=True)

    def run(m, q, k, v):
        return m(q, k, v, need_weights=False)[0]

    check_module(theirs, ours, (2, 3, 4), (2, 4, 3), (2, 4, 5), forward=run)
    assert ours.in_proj_weight is None and ours.k_proj_weight.shape == (4, 3)


def test_multihead_attention_unbatched():
    torch.manual_seed(0)
    check_module(torch.nn.MultiheadAttention(4, 2), nn.MultiheadAttention(4, 2), (3, 4), (4, 4), (4, 4), grad=False)


# The encoder layer is built from layers whose gradients are checked above: here its forward passes.
def test_transformer_encoder_layer_pre_norm_gelu():
    torch.manual_seed(0)
    kwargs = {"dim_feedforward": 8, "dropout": 0.0, "norm_first": True, "activation": "gelu", "batch_first": True}
    theirs, ours = torch.nn.TransformerEncoderLayer(4, 2, **kwargs), nn.TransformerEncoderLayer(4, 2, **kwargs)
    padding = np.array([[False, False, True], [False, True, False]])

    def run(m, x):
        return m(x, src_key_padding_mask=_torch_or_ours(padding, x))

    check_module(theirs, ours, (2, 3, 4), forward=run, grad=False, atol=1e-4, rtol=1e-4)


def test_transformer_encoder_layer_post_norm_causal_in_eval():
    torch.manual_seed(0)
    theirs = torch.nn.TransformerEncoderLayer(4, 2, dim_feedforward=8).eval()
    ours = nn.TransformerEncoderLayer(4, 2, dim_feedforward=8).eval()
    mask = torch.nn.Transformer.generate_square_subsequent_mask(3)

    def run(m, x):
        return m(x, src_mask=_torch_or_ours(mask.numpy(), x), is_causal=True)

    check_module(theirs, ours, (3, 2, 4), forward=run, grad=False, atol=1e-4, rtol=1e-4)
    # is_causal without a mask builds the causal mask
    x_torch, x_ours = make_inputs(((3, 2, 4),), "CPU", 0, False)
    want = theirs(x_torch[0], src_mask=mask).detach().numpy()
    np.testing.assert_allclose(ours(x_ours[0], is_causal=True).numpy(), want, atol=1e-4, rtol=1e-4)
