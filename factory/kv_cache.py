"""A KV cache that appends in place, for decoding on a CPU.

transformers' `DynamicLayer` concatenates its whole cache with each new token (`torch.cat`):
at batch 64 on a CPU that copy is a sixth of a decoding step. `GrowingLayer` keeps its keys and
values as views into buffers with room to spare, so a token is written, not the cache copied.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


def growing_cache(model) -> DynamicCache | None:
    """A `DynamicCache` for `model` made of `GrowingLayer`s, or None (generate's own cache) when
    the model has other layer kinds (sliding windows, linear attention)."""
    cache = DynamicCache(config=model.config)
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [GrowingLayer() for _ in cache.layers]
    return cache


class GrowingLayer(DynamicLayer):
    """A `DynamicLayer` whose `keys` and `values` are the filled prefixes of two buffers; every
    other method (`batch_select_indices`, `crop`, ...) sees plain tensors and works unchanged."""

    key_buffer: torch.Tensor | None = None
    value_buffer: torch.Tensor | None = None

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.key_buffer, self.keys = grown(self.key_buffer, self.keys, key_states)
        self.value_buffer, self.values = grown(self.value_buffer, self.values, value_states)
        return self.keys, self.values


def grown(buffer, cached, new) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer, the view of its filled part) with `new` appended after `cached` along the
    sequence: in place while `cached` is the buffer's own prefix and there is room, else in a
    fresh buffer twice the length needed (the first token, a full buffer, or `cached` replaced
    by `batch_select_indices`)."""
    length = cached.shape[-2] if cached.numel() else 0
    need = length + new.shape[-2]
    fits = buffer is not None and buffer.shape[0] == new.shape[0] and buffer.shape[-2] >= need
    if not fits or (length and buffer.data_ptr() != cached.data_ptr()):
        fresh = new.new_empty((*new.shape[:-2], 2 * need, new.shape[-1]))
        if length:
            fresh[..., :length, :] = cached
        buffer = fresh
    buffer[..., length:need, :] = new
    return buffer, buffer[..., :need, :]
