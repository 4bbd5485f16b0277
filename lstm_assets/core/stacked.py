"""Many symbols' LSTMs as one module: stacked weights and batched matmuls.

One symbol's batches (64 windows of 30 x 95) are far too small to keep a GPU busy, and
``torch.func.vmap`` has no batching rule for ``nn.LSTM``. So the S models of a group live as
stacked tensors (``weight_ih_l0`` of shape ``(S, 4H, I)`` and so on) and one step runs all S
symbols: the input projection of every time step is one ``baddbmm`` per layer, the recurrence one
``bmm`` per step, the head one ``baddbmm``; on CUDA each step's gate arithmetic is PyTorch's fused
LSTM-cell kernel. Parameter names are :class:`~lstm_assets.core.model.LSTMClassifier`'s, so one
model sliced out of the stack saves, loads and evaluates like any other. The training loop
(:mod:`lstm_assets.core.train`) drives it through :class:`lstm_assets.core.trainees.StackedLSTMs`.
"""

from __future__ import annotations

import torch
from torch import nn


class StackedLSTMClassifier(nn.Module):
    """S independent ``LSTMClassifier`` models with stacked parameters (leading dim S).

    ``fused``: the gate arithmetic of each time step as one kernel (PyTorch's own fused LSTM
    cell, ``aten._thnn_fused_lstm_cell``, what ``nn.LSTMCell`` runs on CUDA) instead of about ten
    elementwise kernels, each with its own backward; None = on CUDA (the op has no CPU kernel).
    Under bf16 autocast, autocast hands that op bf16 inputs: the gate pre-activations and the
    cell state between steps are bf16, the arithmetic inside the kernel fp32 (the unfused path
    keeps the cell state in fp32; 164 symbols reach the same mean best validation loss either
    way on an H200). Without autocast everything is fp32.
    """

    def __init__(self, states: list[dict[str, torch.Tensor]], num_layers: int,
                 dropout: float, fused: bool | None = None) -> None:
        super().__init__()
        self.num_layers = num_layers
        self.dropout = dropout
        self.fused = fused
        self.names = list(states[0].keys())
        self.params = nn.ParameterDict({
            k.replace(".", "__"): nn.Parameter(torch.stack([s[k].detach().float()
                                                            for s in states]))
            for k in self.names})

    def p(self, name: str) -> torch.Tensor:
        return self.params[name.replace(".", "__")]

    @torch.no_grad()
    def keep(self, slots: torch.Tensor) -> None:
        """Keep only the models at ``slots`` (new parameters; the old ones are dropped)."""
        for k in list(self.params.keys()):
            self.params[k] = nn.Parameter(self.params[k][slots].clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (S, B, T, F) -> logits (S, B, C)."""
        S, B, T, _ = x.shape
        dev = x.device.type
        # under autocast the matmuls run in its dtype: cast the recurrent weights once per
        # forward, not once per time step (autocast's cache skips views such as a transpose)
        mm_dtype = (torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev)
                    else torch.float32)
        fused = x.is_cuda if self.fused is None else self.fused
        inp = x
        for layer in range(self.num_layers):
            w_ih, w_hh = self.p(f"lstm.weight_ih_l{layer}"), self.p(f"lstm.weight_hh_l{layer}")
            bias = self.p(f"lstm.bias_ih_l{layer}") + self.p(f"lstm.bias_hh_l{layer}")
            hidden = w_hh.shape[-1]
            # input projection of all time steps at once: (S, B*T, I) @ (S, I, 4H) + bias
            xw = torch.baddbmm(bias[:, None, :], inp.reshape(S, B * T, -1),
                               w_ih.transpose(1, 2)).view(S, B, T, 4 * hidden)
            xw = xw.permute(2, 0, 1, 3).contiguous()  # time-major: xw[t] is contiguous
            # one slice per step by unbind: its backward stacks the steps' gradients once,
            # where indexing xw[t] would add each step's into a zeroed copy of all of xw
            xs = xw.unbind(0)
            w_hh_t = w_hh.transpose(1, 2).to(mm_dtype)
            h = x.new_zeros(S, B, hidden, dtype=torch.float32)
            c = torch.zeros_like(h)
            last = layer == self.num_layers - 1
            outs: list[torch.Tensor] = []
            for t in range(T):
                hw = torch.bmm(h.to(mm_dtype), w_hh_t)
                if fused:  # i, f, g, o as nn.LSTM orders them
                    h, c = fused_lstm_cell(xs[t], hw, c)
                else:
                    # gates in fp32 even when the matmuls run in bf16 (autocast)
                    g = (xs[t] + hw).float()
                    i, f, gg, o = g.chunk(4, dim=-1)  # PyTorch's order: input, forget, cell, out
                    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(gg)
                    h = torch.sigmoid(o) * torch.tanh(c)
                if not last:
                    outs.append(h)
            if not last:
                inp = torch.stack(outs, dim=2)
                if self.training and self.dropout > 0:
                    inp = nn.functional.dropout(inp, self.dropout, training=True)
        h = nn.functional.dropout(h, self.dropout, training=self.training and self.dropout > 0)
        w, b = self.p("head.weight"), self.p("head.bias")
        return torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))


_FUSED_LSTM_CELL = torch.ops.aten._thnn_fused_lstm_cell
"""(input_gates (N, 4H), hidden_gates (N, 4H), cx (N, H)) -> (hy, cy, workspace)."""


def fused_lstm_cell(input_gates: torch.Tensor, hidden_gates: torch.Tensor,
                    c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from its two gate pre-activations (..., 4H) and cell state (..., H):
    (h, c) by PyTorch's fused kernel, which also has a fused backward (CUDA only)."""
    lead, four_h = input_gates.shape[:-1], input_gates.shape[-1]
    hy, cy, _ = _FUSED_LSTM_CELL(
        input_gates.reshape(-1, four_h), hidden_gates.reshape(-1, four_h),
        c.reshape(-1, four_h // 4))
    return hy.view(*lead, -1), cy.view(*lead, -1)


class StackedAdam:
    """Adam over stacked parameters with a per-symbol learning rate and update mask.

    Same arithmetic as ``torch.optim.Adam`` (single-tensor path, L2 ``weight_decay``);
    a symbol whose mask is False in a step keeps its weights, moments and step count.
    """

    def __init__(self, params: list[torch.Tensor], lr: float, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = params
        n = params[0].shape[0]
        dev = params[0].device
        self.lr = torch.full((n,), float(lr), dtype=torch.float64, device=dev)
        self.step_count = torch.zeros(n, dtype=torch.float64, device=dev)
        self.wd, self.b1, self.b2, self.eps = weight_decay, betas[0], betas[1], eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """One update for the symbols where ``active`` (bool, shape (S,)) is True."""
        self.step_count += active.double()
        t = self.step_count.clamp_min(1)
        step_size = (self.lr / (1 - self.b1 ** t)).float()
        bc2_sqrt = torch.sqrt(1 - self.b2 ** t).float()
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            act = active.view(shape)
            g = p.grad if self.wd == 0 else p.grad + self.wd * p
            m.copy_(torch.where(act, torch.lerp(m, g, 1 - self.b1), m))
            v.copy_(torch.where(act, v * self.b2 + (1 - self.b2) * g * g, v))
            denom = v.sqrt() / bc2_sqrt.view(shape) + self.eps
            upd = m / denom * step_size.view(shape)
            p.sub_(torch.where(act, upd, torch.zeros_like(upd)))

    def keep(self, slots: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Keep the state of the symbols at ``slots`` only, for the kept ``params``."""
        self.params = params
        self.lr, self.step_count = self.lr[slots], self.step_count[slots]
        self.m = [m[slots] for m in self.m]
        self.v = [v[slots] for v in self.v]
