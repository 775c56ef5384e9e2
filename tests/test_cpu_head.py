"""factory/cpu_head.py: the CPU LM head computes what TRL's fused head computes."""

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction

import factory.cpu_head as cpu_head
from factory.cpu_head import CpuFirstLogProbs, LeanLogProbs

OUTPUTS = ("log_probs", "entropy", "is_top1")


def inputs(n=37, hidden=24, vocab=301, seed=0):
    torch.manual_seed(seed)
    h = torch.randn(n, hidden, requires_grad=True)
    w = (torch.randn(vocab, hidden) * 0.3).requires_grad_(True)
    return h, w, torch.randint(0, vocab, (n,))


def trl(h, w, targets, temperature=1.0, scale=1.0, outputs=OUTPUTS, bias=None, softcap=None):
    return ChunkedLogProbFunction.apply(
        h, w, bias, targets, temperature, 64, softcap, scale, outputs
    )


def grads(h, w, log_probs, entropy, entropy_weight):
    loss = -log_probs.sum() + entropy_weight * entropy.sum()
    return torch.autograd.grad(loss, (h, w))


@pytest.mark.parametrize("temperature,scale,entropy_weight", [(1.0, 1.0, 0.0), (0.7, 1.3, 0.4)])
def test_lean_head_matches_trl_outputs_and_gradients(
    monkeypatch, temperature, scale, entropy_weight
):
    """Log-probabilities, entropy, top-1 and the gradients of hidden states and weight, over
    several blocks of positions (BLOCK_TOKENS lowered), with an entropy gradient and scaled
    logits: TRL's kernel stand-in and the lean head agree to float32 rounding."""
    monkeypatch.setattr(cpu_head, "BLOCK_TOKENS", 10)
    h, w, targets = inputs()
    want_lp, want_ent, _, _, want_top1 = trl(h, w, targets, temperature, scale)
    lp, ent, top1 = LeanLogProbs.apply(h, w, targets, scale / temperature, True, True)
    torch.testing.assert_close(lp, want_lp, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, want_ent, rtol=1e-5, atol=1e-5)
    assert torch.equal(top1, want_top1)
    for got, want in zip(
        grads(h, w, lp, ent, entropy_weight),
        grads(h, w, want_lp, want_ent, entropy_weight),
        strict=True,
    ):
        assert want.abs().sum() > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_top1_counts_the_first_maximum_only():
    """A target tied with an earlier token is not the argmax (TRL's kernel and `argmax` agree);
    one tied with a later token is."""
    h = torch.eye(4)[:2]  # logits are the weight's first two columns
    w = torch.tensor([[5.0, 1.0, 0, 0], [5.0, 5.0, 0, 0], [1.0, 5.0, 0, 0]])
    targets = torch.tensor([1, 1])  # row 0: tied with token 0 before it; row 1: tied after
    _, _, top1 = LeanLogProbs.apply(h, w, targets, 1.0, False, True)
    *_, want = trl(h, w, targets)
    assert top1.tolist() == want.tolist() == [False, True]


def test_without_entropy_or_top1_the_head_returns_none_for_them():
    h, w, targets = inputs(n=5)
    lp, ent, top1 = LeanLogProbs.apply(h, w, targets, 1.0, False, False)
    assert ent is None and top1 is None
    torch.testing.assert_close(lp, trl(h, w, targets, outputs=("log_probs",))[0])


def test_the_lean_head_runs_bf16_matmuls_under_autocast():
    """Under autocast the projection runs in bf16, and the results stay within bf16 rounding of
    TRL's, which projects in bf16 too."""
    h, w, targets = inputs(n=20, hidden=64, vocab=500)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp, ent, top1 = LeanLogProbs.apply(h, w, targets, 1.0, True, True)
        want_lp, want_ent, *_ = trl(h, w, targets)
    assert lp.dtype == ent.dtype == torch.float32
    torch.testing.assert_close(lp, want_lp, rtol=1e-3, atol=1e-3)
    (got,) = torch.autograd.grad(-lp.sum(), h)
    (want,) = torch.autograd.grad(-want_lp.sum(), h)
    assert (got - want).norm() / want.norm() < 0.01


@pytest.mark.parametrize(
    "extra",
    [
        {"bias": "bias"},
        {"softcap": 30.0},
        {"outputs": ("log_probs", "log_sum_sq_probs")},
    ],
)
def test_what_the_lean_head_does_not_compute_goes_to_trl(monkeypatch, extra):
    """A bias, soft-capped logits or another optional output: TRL's function computes it."""
    h, w, targets = inputs(n=6)
    if extra.get("bias"):
        extra = {"bias": torch.randn(w.shape[0])}
    calls = []

    class Spy(ChunkedLogProbFunction):
        @staticmethod
        def forward(ctx, *args):
            calls.append(len(args))
            return ChunkedLogProbFunction.forward(ctx, *args)

    monkeypatch.setattr(CpuFirstLogProbs, "trl_function", Spy)
    args = {"bias": None, "softcap": None, "outputs": OUTPUTS, **extra}
    got = CpuFirstLogProbs.apply(
        h, w, args["bias"], targets, 1.0, 64, args["softcap"], 1.0, args["outputs"]
    )
    want = trl(h, w, targets, **args)
    assert calls, "TRL's function ran"
    for a, b in zip(got, want, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b)


def test_the_lean_head_answers_in_trl_s_shape():
    """Five outputs, as TRL's function gives them: log-probs, entropy, None, None, top-1."""
    h, w, targets = inputs(n=4)
    got = CpuFirstLogProbs.apply(h, w, None, targets, 1.0, 64, None, 1.0, OUTPUTS)
    want = trl(h, w, targets)
    assert len(got) == 5 and got[2] is None and got[3] is None
    torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(got[4], want[4])


def test_a_batch_without_labelled_positions_gives_a_differentiable_zero():
    """An all-masked micro-batch: nothing to score, and backward still runs (as TRL's does)."""
    h, w, targets = inputs(n=0)
    lp, ent, top1 = LeanLogProbs.apply(h, w, targets, 1.0, True, True)
    assert lp.shape == ent.shape == top1.shape == (0,)
    (grad,) = torch.autograd.grad(-lp.sum(), h)
    assert grad.shape == h.shape
