"""Conversations' KV caches kept between turns, so the next turn prefills only its new tokens.

Owns: `PrefixCache`, a byte-bounded LRU store of transformers `DynamicCache` objects keyed by the token ids
whose keys and values they hold (per adapter: a variant's KV differs from its base's). `take(ids)` hands out
the entry sharing the longest prefix with a new prompt, cropped to that prefix (minus one token, which the
model must still see to produce logits), `put(ids, cache)` stores what a finished turn leaves. This covers
send (the history is the previous turn's prompt plus answer), continue (the same, cut inside the answer)
and regenerate (the previous prompt, its answer cropped away).
Ignores: conversations as such (a prompt's tokens are the key), other cache classes (a model whose cache
holds sliding-window or linear-attention layers cannot be cropped back: such caches are not kept), and
llama.cpp (it has its own prompt cache). torch is never imported here: the caches come from the backend.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

# A shared start (a system prompt) shorter than this is not worth copying another conversation's cache for.
MIN_REUSE_TOKENS = 16


@dataclass
class _Entry:
    scope: str | None  # the adapter whose KV this is (None: the base model)
    ids: list[int]
    cache: Any
    size: int


def cache_bytes(cache: Any) -> int:
    """Bytes the keys and values of a DynamicCache take."""
    total = 0
    for layer in getattr(cache, "layers", []):
        for tensor in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if tensor is not None and hasattr(tensor, "numel"):
                total += tensor.numel() * tensor.element_size()
    return total


def croppable(cache: Any) -> bool:
    """Only plain full-attention layers can be cut back to a shorter prefix."""
    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer" for layer in layers)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixCache:
    """At most `max_bytes` of kept KV caches; the least recently used go first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next = 0
        self._lock = threading.Lock()
        self.hits = 0  # prompt tokens not prefilled again, for tests and benchmarks
        self.misses = 0

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, scope: str | None, ids: list[int]) -> tuple[Any, int]:
        """A cache holding the longest kept prefix of `ids` (at most len(ids) - 1 tokens) and its length;
        (None, 0) when nothing useful is kept. An entry mostly covered by `ids` is its conversation going
        on: it is handed out (and leaves the store); a short shared start is copied instead."""
        with self._lock:
            best_key, best = None, 0
            for key, entry in self._entries.items():
                if entry.scope == scope:
                    n = common_prefix(entry.ids, ids)
                    if n > best:
                        best_key, best = key, n
            keep = min(best, len(ids) - 1)
            if best_key is None or keep < MIN_REUSE_TOKENS:
                self.misses += 1
                return None, 0
            entry = self._entries[best_key]
            if 2 * best >= len(entry.ids):
                del self._entries[best_key]
                cache = entry.cache
            else:
                cache = copy.deepcopy(entry.cache)
                self._entries.move_to_end(best_key)
        have = cache.get_seq_length()
        if have > keep:
            cache.crop(keep - have)  # transformers 5: a negative count of tokens to remove from the end
        self.hits += 1
        return cache, keep

    def put(self, scope: str | None, ids: list[int], cache: Any) -> None:
        """Keep `cache` (holding `ids`) as the newest entry; drop entries it supersedes, then the oldest
        while over the bound. A cache that cannot be cropped, or alone exceeds the bound, is not kept."""
        if not croppable(cache) or cache.get_seq_length() != len(ids):
            return
        size = cache_bytes(cache)
        if size > self.max_bytes:
            return
        with self._lock:
            stale = [k for k, e in self._entries.items() if e.scope == scope and ids[: len(e.ids)] == e.ids]
            for key in stale:
                del self._entries[key]  # a shorter prefix of the same conversation: this entry holds it all
            self._entries[self._next] = _Entry(scope, list(ids), cache, size)
            self._next += 1
            total = sum(e.size for e in self._entries.values())
            while total > self.max_bytes and self._entries:
                _, old = self._entries.popitem(last=False)
                total -= old.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
