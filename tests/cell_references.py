"""One step of each library cell of examples/cells.rnn, written in plain PyTorch from the
cited source's equations (not from the .rnn text), for `user_cells.run_reference`.

Each step takes `p` (parameter name -> tensor, one layer and direction), `x` [B, F] and
the states tuple in the cell's declaration order, and returns the new states.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F


def _ln(v, weight=None, bias=None, eps=1e-5):
    return F.layer_norm(v, (v.shape[-1],), weight, bias, eps)


# ----------------------------------------------------------------------------- PyTorch's


def lstm_step(p, x, states):
    # torch.nn.LSTM documentation: i, f, g, o; c' = f c + i g; h' = o tanh(c').
    h, c = states
    gates = F.linear(x, p["weight_ih"], p["bias_ih"]) + F.linear(h, p["weight_hh"], p["bias_hh"])
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    if "weight_hr" in p:  # proj_size > 0: h_t = W_hr h_t
        h = F.linear(h, p["weight_hr"])
    return h, c


def gru_step(p, x, states):
    # torch.nn.GRU documentation: r, z, n; n = tanh(W_in x + b_in + r (W_hn h + b_hn)).
    (h,) = states
    xr, xz, xn = F.linear(x, p["weight_ih"], p["bias_ih"]).chunk(3, dim=-1)
    hr, hz, hn = F.linear(h, p["weight_hh"], p["bias_hh"]).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return ((1 - z) * n + z * h,)


def rnn_tanh_step(p, x, states):
    (h,) = states
    return (torch.tanh(F.linear(x, p["weight_ih"], p["bias_ih"])
                       + F.linear(h, p["weight_hh"], p["bias_hh"])),)


def rnn_relu_step(p, x, states):
    (h,) = states
    return (torch.relu(F.linear(x, p["weight_ih"], p["bias_ih"])
                       + F.linear(h, p["weight_hh"], p["bias_hh"])),)


# ----------------------------------------------------------------------------- layer norm


def custom_lstms_layer_norm_step(p, x, states):
    # pytorch/benchmarks/fastrnns/custom_lstms.py, LayerNormLSTMCell.forward:
    # igates = LN_i(x W_ih^T); hgates = LN_h(hx W_hh^T); cy = LN_c(f cx + i g); hy = o tanh(cy)
    # and the state carried on is (hy, cy): the normalised cell state.
    hx, cx = states
    igates = _ln(F.linear(x, p["weight_ih"]), p["layernorm_i_weight"], p["layernorm_i_bias"])
    hgates = _ln(F.linear(hx, p["weight_hh"]), p["layernorm_h_weight"], p["layernorm_h_bias"])
    ingate, forgetgate, cellgate, outgate = (igates + hgates).chunk(4, dim=-1)
    cy = _ln(torch.sigmoid(forgetgate) * cx + torch.sigmoid(ingate) * torch.tanh(cellgate),
             p["layernorm_c_weight"], p["layernorm_c_bias"])
    hy = torch.sigmoid(outgate) * torch.tanh(cy)
    return hy, cy


def haste_layer_norm_step(p, x, states):
    # lmnt-com/haste LayerNormLSTM (layer_norm_lstm_forward_gpu.cu.cc): v = LN(Wx; gamma[0])
    # + LN(Rh; gamma[1]) + b, gates i, g, f, o; c' = f c + i g carried raw;
    # h' = o tanh(LN(c'; gamma_h, beta_h)). Its bias b is [b_i, b_g, b_f, b_o] here.
    h, c = states
    v = (_ln(F.linear(x, p["kernel"]), p["gamma_x"])
         + _ln(F.linear(h, p["recurrent_kernel"]), p["gamma_r"]))
    v = v + torch.cat([p["bias_i"], p["bias_g"], p["bias_f"], p["bias_o"]])
    i, g, f, o = v.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(_ln(c, p["gamma_h"], p["beta_h"]))
    return h, c


# ----------------------------------------------------------------------------- ONNX LSTMs


def peephole_step(p, x, states):
    # ONNX LSTM: it = f(Xt Wi + Ht-1 Ri + Pi (.) Ct-1 + Wbi + Rbi),
    # ft = f(... + Pf (.) Ct-1 ...), Ct = ft (.) Ct-1 + it (.) ct,
    # ot = f(... + Po (.) Ct ...), Ht = ot (.) h(Ct).
    h, c_prev = states
    pre = F.linear(x, p["weight_ih"], p["bias_ih"]) + F.linear(h, p["weight_hh"], p["bias_hh"])
    zi, zf, zg, zo = pre.chunk(4, dim=-1)
    i = torch.sigmoid(zi + p["peep_i"] * c_prev)
    f = torch.sigmoid(zf + p["peep_f"] * c_prev)
    c = f * c_prev + i * torch.tanh(zg)
    o = torch.sigmoid(zo + p["peep_o"] * c)
    return o * torch.tanh(c), c


def coupled_step(p, x, states):
    # ONNX LSTM with input_forget = 1 (CIFG, Greff et al. 2017): ft = 1 - it.
    h, c = states
    pre = F.linear(x, p["weight_ih"], p["bias_ih"]) + F.linear(h, p["weight_hh"], p["bias_hh"])
    zi, zg, zo = pre.chunk(3, dim=-1)
    i = torch.sigmoid(zi)
    f = 1 - i
    c = f * c + i * torch.tanh(zg)
    return torch.sigmoid(zo) * torch.tanh(c), c


# ----------------------------------------------------------------------------- GRU variants


def original_gru_step(p, x, states):
    # Cho et al. 2014, eq. 5-8 (ONNX linear_before_reset = 0):
    # r = s(W_r x + U_r h), z = s(W_z x + U_z h), h~ = tanh(W x + U (r * h)),
    # h' = z h + (1 - z) h~, with the biases of both sides as ONNX has them (Wb, Rb).
    (h,) = states
    w_r, w_z, w_n = p["weight_ih"].chunk(3, dim=0)
    b_r, b_z, b_n = p["bias_ih"].chunk(3, dim=0)
    u_r, u_z = p["weight_hh_rz"].chunk(2, dim=0)
    c_r, c_z = p["bias_hh_rz"].chunk(2, dim=0)
    r = torch.sigmoid(x @ w_r.T + b_r + h @ u_r.T + c_r)
    z = torch.sigmoid(x @ w_z.T + b_z + h @ u_z.T + c_z)
    candidate = torch.tanh(x @ w_n.T + b_n + (r * h) @ p["weight_hh_n"].T + p["bias_hh_n"])
    return (z * h + (1 - z) * candidate,)


def indrnn_step(p, x, states):
    # Li et al. 2018, eq. 2: h_t = relu(W x_t + u (.) h_{t-1} + b).
    (h,) = states
    return (torch.relu(x @ p["weight_ih"].T + p["recurrent_scale"] * h + p["bias"]),)


def min_gru_step(p, x, states):
    # Feng et al. 2024, section 3.1 (sequential): z_t = s(Linear(x_t)), h~_t = Linear(x_t),
    # h_t = (1 - z_t) (.) h_{t-1} + z_t (.) h~_t.
    (h,) = states
    z = torch.sigmoid(x @ p["weight_z"].T)
    return ((1 - z) * h + z * (x @ p["weight_h"].T),)


def min_lstm_step(p, x, states):
    # Feng et al. 2024, section 3.2 (sequential): f_t, i_t = s(Linear(x_t)),
    # f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t), h_t = f'_t h_{t-1} + i'_t h~_t.
    (h,) = states
    f = torch.sigmoid(x @ p["weight_f"].T)
    i = torch.sigmoid(x @ p["weight_i"].T)
    total = f + i
    return ((f / total) * h + (i / total) * (x @ p["weight_h"].T),)


def slstm_step(p, x, states):
    # Beck et al. 2024 (xLSTM), sLSTM with stabiliser: i_t = exp(i~), f_t = s(f~) (so
    # log f_t = logsigmoid(f~)), m_t = max(log f_t + m_{t-1}, log i_t),
    # i'_t = exp(log i_t - m_t), f'_t = exp(log f_t + m_{t-1} - m_t),
    # c_t = f' c + i' tanh(z~), n_t = f' n + i', h_t = s(o~) (.) c_t / n_t. Gates i, f, z, o.
    h, c, n, m = states
    pre = x @ p["weight_ih"].T + p["bias"] + h @ p["weight_hh"].T
    i_raw, f_raw, z_raw, o_raw = pre.chunk(4, dim=-1)
    log_f = F.logsigmoid(f_raw)
    m_new = torch.maximum(log_f + m, i_raw)
    i = torch.exp(i_raw - m_new)
    f = torch.exp(log_f + m - m_new)
    c = f * c + i * torch.tanh(z_raw)
    n = f * n + i
    return torch.sigmoid(o_raw) * (c / n), c, n, m_new


# ----------------------------------------------------------------------------- table


class Reference(NamedTuple):
    step: Callable
    states: tuple[str, ...]  # in declaration order
    arguments: dict  # the cell's declared arguments used in the tests
    torch_module: str | None = None  # nn.LSTM etc. when PyTorch has the cell itself
    torch_kwargs: dict = {}

    def state_sizes(self, hidden_size: int) -> tuple[int, ...]:
        proj = self.arguments.get("proj_size")
        return tuple(proj if (name == "h" and proj) else hidden_size for name in self.states)

    def initial_state(self, name: str, shape, generator_like):
        """A random initial state; the sLSTM normaliser must stay away from zero."""
        value = torch.randn(shape, dtype=generator_like.dtype, device=generator_like.device)
        if name == "n":
            value = value.abs() + 0.5
        return value


REFERENCES: dict[str, Reference] = {
    "TorchLSTM": Reference(lstm_step, ("h", "c"), {}, "LSTM"),
    "TorchLSTMP": Reference(lstm_step, ("h", "c"), {"proj_size": 3}, "LSTM", {"proj_size": 3}),
    "TorchGRU": Reference(gru_step, ("h",), {}, "GRU"),
    "TorchRNN": Reference(rnn_tanh_step, ("h",), {}, "RNN", {"nonlinearity": "tanh"}),
    "TorchRNNReLU": Reference(rnn_relu_step, ("h",), {}, "RNN", {"nonlinearity": "relu"}),
    "LayerNormLSTM": Reference(custom_lstms_layer_norm_step, ("h", "c"), {}),
    "HasteLayerNormLSTM": Reference(haste_layer_norm_step, ("h", "c"), {}),
    "PeepholeLSTM": Reference(peephole_step, ("h", "c"), {}),
    "CoupledLSTM": Reference(coupled_step, ("h", "c"), {}),
    "OriginalGRU": Reference(original_gru_step, ("h",), {}),
    "IndRNN": Reference(indrnn_step, ("h",), {}),
    "MinGRU": Reference(min_gru_step, ("h",), {}),
    "MinLSTM": Reference(min_lstm_step, ("h",), {}),
    "SLSTM": Reference(slstm_step, ("h", "c", "n", "m"), {}),
}
