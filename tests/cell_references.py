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
    # h' = z h + (1 - z) h~, with the biases of both sides as ONNX has them (Wb, Rb);
    # the weights stacked as nn.GRU stacks them (r, z, n).
    (h,) = states
    w_r, w_z, w_n = p["weight_ih"].chunk(3, dim=0)
    b_r, b_z, b_n = p["bias_ih"].chunk(3, dim=0)
    u_r, u_z, u_n = p["weight_hh"].chunk(3, dim=0)
    c_r, c_z, c_n = p["bias_hh"].chunk(3, dim=0)
    r = torch.sigmoid(x @ w_r.T + b_r + h @ u_r.T + c_r)
    z = torch.sigmoid(x @ w_z.T + b_z + h @ u_z.T + c_z)
    candidate = torch.tanh(x @ w_n.T + b_n + (r * h) @ u_n.T + c_n)
    return (z * h + (1 - z) * candidate,)


def sru_step(p, x, states):
    # Lei et al. 2018 (SRU), eq. 1-4 with the highway connection: f, r read c_{t-1}
    # elementwise (v_f, v_r); c' = f c + (1 - f) W x; h' = r c' + (1 - r) x.
    h, c = states
    hidden = c.shape[-1]
    w, w_f, w_r = p["weight"][:hidden], p["weight"][hidden:2 * hidden], p["weight"][2 * hidden:]
    v_f, v_r = p["weight_c"][:hidden], p["weight_c"][hidden:]
    b_f, b_r = p["bias"][:hidden], p["bias"][hidden:]
    f = torch.sigmoid(x @ w_f.T + v_f * c + b_f)
    r = torch.sigmoid(x @ w_r.T + v_r * c + b_r)
    c_new = f * c + (1 - f) * (x @ w.T)
    return r * c_new + (1 - r) * x, c_new


def clipped_lstm_step(p, x, states, memory_clip=3.0, state_clip=3.0):
    # AllenNLP LstmCellWithProjection.forward: projected_input = input_linearity(x),
    # projected_state = state_linearity(h) (with bias); gates input, forget, memory_init,
    # output in that order; memory clamped to +-memory_cell_clip_value, the projection of
    # output_gate * tanh(memory) clamped to +-state_projection_clip_value.
    h, c = states
    cell = c.shape[-1]
    gates = x @ p["input_linearity"].T + h @ p["state_linearity"].T + p["state_bias"]
    input_gate = torch.sigmoid(gates[..., :cell])
    forget_gate = torch.sigmoid(gates[..., cell:2 * cell])
    memory_init = torch.tanh(gates[..., 2 * cell:3 * cell])
    output_gate = torch.sigmoid(gates[..., 3 * cell:])
    memory = torch.clamp(input_gate * memory_init + forget_gate * c, -memory_clip, memory_clip)
    output = (output_gate * torch.tanh(memory)) @ p["state_projection"].T
    return torch.clamp(output, -state_clip, state_clip), memory


def multihead_slstm_step(p, x, states):
    # Beck et al. 2024 (xLSTM), sLSTM with heads: each gate's recurrent weight is one
    # [head_dim, head_dim] matrix per head, mixing only within the head (NX-AI keeps a
    # [heads, head_dim, head_dim] kernel per gate); the pointwise part as slstm_step.
    h, c, n, m = states
    pre = x @ p["weight_ih"].T + p["bias"]
    recurrent = []
    for gate in ("r_i", "r_f", "r_z", "r_o"):
        kernel = p[gate]  # [heads, head_dim, head_dim]
        heads, head_dim = kernel.shape[0], kernel.shape[2]
        per_head = [h[..., k * head_dim:(k + 1) * head_dim] @ kernel[k].T for k in range(heads)]
        recurrent.append(torch.cat(per_head, dim=-1))
    i_x, f_x, z_x, o_x = pre.chunk(4, dim=-1)
    i_raw = i_x + recurrent[0]
    log_f = F.logsigmoid(f_x + recurrent[1])
    m_new = torch.maximum(log_f + m, i_raw)
    i = torch.exp(i_raw - m_new)
    f = torch.exp(log_f + m - m_new)
    c = f * c + i * torch.tanh(z_x + recurrent[2])
    n = f * n + i
    return torch.sigmoid(o_x + recurrent[3]) * (c / n), c, n, m_new


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
    sized_by: dict = {}  # a state sized by a cell argument: state name -> argument name

    def state_sizes(self, hidden_size: int) -> tuple[int, ...]:
        proj = self.arguments.get("proj_size")
        return tuple(self.arguments[self.sized_by[name]] if name in self.sized_by
                     else proj if (name == "h" and proj) else hidden_size
                     for name in self.states)

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
    "ClippedLSTM": Reference(clipped_lstm_step, ("h", "c"), {"cell_size": 6},
                             sized_by={"c": "cell_size"}),
    "MultiHeadSLSTM": Reference(multihead_slstm_step, ("h", "c", "n", "m"), {"heads": 2}),
}

# Cells whose blocks the general configurations of the tests do not fit: SRU's highway
# reads `x` elementwise with its states (`require input_size == hidden_size`), so it runs
# with as many input features as hidden units and one direction
# (tests/test_cell_language.py).
SQUARE_REFERENCES: dict[str, Reference] = {
    "SRU": Reference(sru_step, ("h", "c"), {}),
}
