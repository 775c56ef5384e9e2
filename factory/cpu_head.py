"""TRL's fused LM head, made cheap on a CPU.

TRL scores each labelled position through `ChunkedLogProbFunction`: the vocabulary projection in
tiles, folded into online log-sum-exp statistics by a Triton kernel, or, without Triton, by
torch ops written as that kernel's stand-in (a float32 copy, two unit scalings, masks and a
zero-filled gradient per tile, and float32 gradient matmuls). On a 2-core CPU that stand-in was a
fifth of a training step. Here, on a CPU, the same outputs (log-probabilities, entropy, top-1)
come from one bf16 projection per block of positions, `logsumexp` and `argmax`; the backward
recomputes the block and turns it into the gradient in place. Anything else (a bias, soft-capped
logits, the other optional outputs, a GPU) goes to TRL's function unchanged.
"""

from __future__ import annotations

import torch

# Positions per block: bounds the float32 logits held at once (1,024 x 49,152 x 4 B = 200 MB).
BLOCK_TOKENS = 1024
LEAN_OUTPUTS = {"log_probs", "entropy", "is_top1"}


def compute_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The matmul dtype autocast would use for `hidden`, or its own outside autocast."""
    kind = hidden.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else hidden.dtype


def block_logits(hidden, weight, scale: float) -> torch.Tensor:
    """Float32 logits of one block of positions, projected in `weight`'s dtype."""
    logits = (hidden.to(weight.dtype) @ weight.t()).float()
    return logits if scale == 1.0 else logits.mul_(scale)


class LeanLogProbs(torch.autograd.Function):
    """Per-position log-probability of each target, its entropy and whether it is the argmax."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, scale: float, with_entropy: bool, with_top1: bool):
        ctx.set_materialize_grads(False)
        low = weight.to(compute_dtype(hidden))
        log_z, log_probs, entropy, top1 = [], [], [], []
        with torch.autocast("cpu", enabled=False):  # the matmul is in `low`'s dtype already
            for start in range(0, max(hidden.shape[0], 1), BLOCK_TOKENS):  # one for none
                logits = block_logits(hidden[start : start + BLOCK_TOKENS], low, scale)
                tgt = targets[start : start + BLOCK_TOKENS, None]
                if with_top1:  # argmax returns the first maximum, as TRL's kernel counts it
                    top1.append(logits.argmax(dim=-1) == tgt.squeeze(1))
                z = torch.logsumexp(logits, dim=-1)
                if with_entropy:
                    probs = torch.exp(logits - z[:, None])
                    entropy.append(z - (probs * logits).sum(dim=-1))
                log_z.append(z)
                log_probs.append(logits.gather(1, tgt).squeeze(1) - z)
        log_z = torch.cat(log_z)
        entropy = torch.cat(entropy) if with_entropy else None
        top1 = torch.cat(top1) if with_top1 else None
        ctx.save_for_backward(hidden, weight, targets, log_z, entropy)
        ctx.low, ctx.scale = low, scale
        if top1 is not None:
            ctx.mark_non_differentiable(top1)
        return torch.cat(log_probs), entropy, top1

    @staticmethod
    def backward(ctx, grad_log_probs, grad_entropy, _):
        hidden, weight, targets, log_z, entropy = ctx.saved_tensors
        low, scale = ctx.low, ctx.scale
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros_like(weight, dtype=torch.float32) if ctx.needs_input_grad[1] else None
        )
        with torch.autocast("cpu", enabled=False):
            for start in range(0, max(hidden.shape[0], 1), BLOCK_TOKENS):  # one for none
                rows = slice(start, start + BLOCK_TOKENS)
                # d log p_t / dz = onehot(t) - p;  d entropy / dz = -p (log p + entropy)
                grad = block_logits(hidden[rows], low, scale).sub_(log_z[rows, None])
                log_p = grad.clone() if grad_entropy is not None else None
                grad.exp_()
                if grad_entropy is not None:
                    ent = log_p.add_(entropy[rows, None]).mul_(grad).mul_(grad_entropy[rows, None])
                if grad_log_probs is None:
                    grad.zero_()
                else:
                    g = grad_log_probs[rows, None].float()
                    grad.mul_(-g).scatter_add_(1, targets[rows, None], g)
                if grad_entropy is not None:
                    grad.sub_(ent)
                if scale != 1.0:
                    grad.mul_(scale)
                # one matmul over the whole vocabulary, rounded once (not per vocabulary chunk)
                grad = grad.to(low.dtype)
                if grad_hidden is not None:
                    grad_hidden[rows] = grad @ low
                if grad_weight is not None:
                    grad_weight += (grad.t() @ hidden[rows].to(low.dtype)).float()
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None, None


class CpuFirstLogProbs:
    """Stands in for TRL's `_ChunkedLogProbFunction`: the lean path where it computes the same
    thing, TRL's otherwise."""

    trl_function = None  # set by `use_lean_cpu_head`

    @classmethod
    def apply(
        cls, hidden, weight, bias, targets, temperature, chunk_size, softcap, logit_scale, outputs
    ):
        wanted = set(outputs) | {"log_probs"}
        if hidden.device.type != "cpu" or bias is not None or softcap or not wanted <= LEAN_OUTPUTS:
            return cls.trl_function.apply(
                hidden,
                weight,
                bias,
                targets,
                temperature,
                chunk_size,
                softcap,
                logit_scale,
                outputs,
            )
        scale = logit_scale / temperature
        log_probs, entropy, top1 = LeanLogProbs.apply(
            hidden, weight, targets, scale, "entropy" in wanted, "is_top1" in wanted
        )
        return log_probs, entropy, None, None, top1


def use_lean_cpu_head() -> None:
    """On a CPU, TRL's fused LM head projects only the labelled positions (it does so on Triton
    devices, and every position elsewhere to keep shapes fixed for compilers: most of a SVAMP
    batch is prompt, whose projections the loss masks away), through `LeanLogProbs`. It patches
    two names in `trl.trainer.utils`; tests/test_cpu_head.py and tests/test_train.py check loss,
    metrics and gradients."""
    import trl.trainer.utils as trl_utils

    chooser = getattr(trl_utils, "_use_triton", None)
    if chooser is None or getattr(chooser, "labelled_only_on_cpu", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or chooser(device)

    compact.labelled_only_on_cpu, compact.trl_choice = True, chooser
    trl_utils._use_triton = compact
    trl_function = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if trl_function is not None:  # a TRL without it keeps its own head
        CpuFirstLogProbs.trl_function = trl_function
        trl_utils._ChunkedLogProbFunction = CpuFirstLogProbs
