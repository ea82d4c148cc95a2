"""AdamW written out: Adam's moment estimates with decoupled weight decay, one parameter at a time.

Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", https://arxiv.org/abs/1711.05101 (Algorithm 2),
on Adam (Kingma & Ba 2015, https://arxiv.org/abs/1412.6980, Algorithm 1). lectures/06_training.ipynb derives the
update (Eqs. 6.2-6.5); lectures/09_modern_blocks.ipynb sets the exercise `optim.py::adamw_step`.

`AdamW` takes the arguments of `torch.optim.AdamW` (params or parameter groups, lr, betas, eps, weight_decay,
amsgrad, maximize), keeps the same per-parameter state (`step`, `exp_avg`, `exp_avg_sq`), so its
state_dict loads into torch's and back, and is tested against it to 1e-6 over 100 steps. `train.py --optimizer
minilm` trains with it; the default stays torch's (fused on CUDA), which does the same arithmetic in fewer kernels.

Left out on purpose: amsgrad (accepted as False only), torch's kernel choices (foreach, fused, capturable, differentiable), complex parameters,
sparse gradients.
"""

from __future__ import annotations

import math

import torch


@torch.no_grad()
def adamw_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: int,
               lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    """One AdamW update of `param`, in place (Eqs. 6.2-6.5); exp_avg and exp_avg_sq are updated in place too.

    `step` counts this update (1 on the first call), for the bias correction. The decay multiplies the weights by
    (1 - lr wd) before the Adam step, as torch.optim.AdamW does (the paper scales wd by a schedule multiplier instead
    of lr).
    """
    param.mul_(1 - lr * weight_decay)  # Eq. 6.5, decoupled decay: theta <- theta - lr wd theta
    exp_avg.lerp_(grad, 1 - beta1)  # Eq. 6.2: m <- b1 m + (1 - b1) g
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # Eq. 6.3: v <- b2 v + (1 - b2) g^2
    bias_correction1 = 1 - beta1**step  # Eq. 6.4: m^ = m / (1 - b1^t)
    bias_correction2 = 1 - beta2**step  # Eq. 6.4: v^ = v / (1 - b2^t)
    denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(eps)  # sqrt(v^) + eps
    param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)  # Eq. 6.5: theta <- theta - lr m^ / (sqrt(v^) + eps)


class AdamW(torch.optim.Optimizer):
    """AdamW with torch.optim.AdamW's arguments and defaults; `step()` loops over parameters calling `adamw_step`."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid beta parameters: {betas}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if amsgrad:
            raise ValueError("minilm.optim.AdamW leaves out amsgrad: use torch.optim.AdamW(amsgrad=True)")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = -p.grad if group["maximize"] else p.grad
                state = self.state[p]
                if not state:  # the same names and types as torch's state, so state_dicts interchange
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                adamw_step(p, grad, state["exp_avg"], state["exp_avg_sq"], int(state["step"]), group["lr"], beta1,
                           beta2, group["eps"], group["weight_decay"])
        return loss
