"""The peak of live tensor bytes while some torch code runs on the CPU: every tensor an operation returns is
counted from its creation until the last tensor viewing its storage is freed (in-place results and views
add nothing). Tensors that existed before (weights, inputs) are not counted. Kernel workspaces are not
seen: this measures what a caching allocator would have to hold for the tensors themselves."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    def __init__(self, *existing: torch.Tensor) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._views: dict[int, int] = {}  # storage address -> live tensors viewing it
        self._existing = {tensor.untyped_storage().data_ptr() for tensor in existing}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(result)[0]:
            if isinstance(tensor, torch.Tensor):
                self._track(tensor)
        return result

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        address, size = storage.data_ptr(), storage.nbytes()
        if address == 0 or address in self._existing:
            return
        if address not in self._views:
            self._views[address] = 0
            self.live += size
            self.peak = max(self.peak, self.live)
        self._views[address] += 1
        weakref.finalize(tensor, self._release, address, size)

    def _release(self, address: int, size: int) -> None:
        self._views[address] -= 1
        if self._views[address] == 0:
            del self._views[address]
            self.live -= size
