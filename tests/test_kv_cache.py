"""The in-place KV cache layer: appends write into one buffer, the cache reads as plain
tensors, and a layer whose rows were selected or cropped carries on correctly."""

from __future__ import annotations

import torch

from factory.kv_cache import GrowingLayer, grown


def test_appends_write_into_one_buffer_until_it_is_full():
    buffer, cached = None, torch.tensor([])
    steps = [torch.randn(2, 3, n, 4) for n in (5, 1, 1, 1, 1, 1, 1)]
    for i, new in enumerate(steps):
        before = None if buffer is None else buffer.data_ptr()
        buffer, cached = grown(buffer, cached, new)
        length = sum(s.shape[-2] for s in steps[: i + 1])
        assert cached.shape == (2, 3, length, 4)
        assert torch.equal(cached, torch.cat(steps[: i + 1], dim=-2))
        if i in (1, 2, 3, 4):  # room for 10 after the first 5: written in place
            assert buffer.data_ptr() == before
    assert buffer.shape[-2] == 22, "full at 11: a fresh buffer twice the length needed"


def test_a_layer_reads_as_the_concatenation_after_selecting_rows_and_cropping():
    layer, reference = GrowingLayer(), []
    for n in (4, 1, 1):
        k, v = torch.randn(3, 2, n, 8), torch.randn(3, 2, n, 8)
        keys, values = layer.update(k, v)
        reference.append((k, v))
    assert torch.equal(keys, torch.cat([k for k, _ in reference], dim=-2))
    assert torch.equal(values, torch.cat([v for _, v in reference], dim=-2))
    keep = torch.tensor([2, 0])
    layer.batch_select_indices(keep)
    k, v = torch.randn(2, 2, 1, 8), torch.randn(2, 2, 1, 8)
    keys, values = layer.update(k, v)
    expected = torch.cat([torch.cat([k for k, _ in reference], dim=-2)[keep], k], dim=-2)
    assert torch.equal(keys, expected) and layer.get_seq_length() == 7
    layer.crop(-2)
    keys, _ = layer.update(k, v)
    assert torch.equal(keys, torch.cat([expected[..., :5, :], k], dim=-2))


def test_models_with_other_layer_kinds_keep_generates_own_cache():
    from types import SimpleNamespace

    from transformers import LlamaConfig, MistralConfig

    from factory.kv_cache import growing_cache

    full = growing_cache(SimpleNamespace(config=LlamaConfig(num_hidden_layers=3)))
    assert [type(layer) for layer in full.layers] == [GrowingLayer] * 3
    sliding = MistralConfig(num_hidden_layers=2, sliding_window=8)
    assert growing_cache(SimpleNamespace(config=sliding)) is None
