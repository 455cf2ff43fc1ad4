"""What a CPU training step allocates: the peak of live allocated bytes, and the largest tensor an op made.

- :func:`peak_allocated_bytes` replays torch.profiler's allocation records (``profile_memory=True``): each
  CPU allocation and free of torch's allocator in time order; the peak of their running sum is the most
  memory torch held at once during the step beyond what was live before it. It reads the profiler's event
  tree (``kineto_results.experimental_event_tree()``, the records torch's own memory profiler reads), a
  semi-private interface: if it changes, the tests that use it fail loudly rather than pass.
- :class:`LargestOutput` is a TorchDispatchMode that sees every aten op's outputs (inside autograd
  Functions, the backward and the optimizer too) and keeps the shape of the largest one (meta tensors,
  which hold no memory, are left out).
"""

from __future__ import annotations

import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def peak_allocated_bytes(fn) -> int:
    """Run ``fn()`` and return the peak of bytes allocated by torch on the CPU and not yet freed."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        if e.tag == _EventType.Allocation:
            sizes.append((e.start_time_ns, e.extra_fields.alloc_size))
        stack.extend(e.children)
    if not sizes:
        raise RuntimeError("torch.profiler recorded no allocations: the memory measurement does not work here")
    sizes.sort()
    live = peak = 0
    for _, n in sizes:
        live += n
        peak = max(peak, live)
    return peak


class LargestOutput(TorchDispatchMode):
    """Records the numel and shape of the largest tensor any aten op returns while the mode is active."""

    def __init__(self):
        super().__init__()
        self.numel = 0
        self.shape: tuple[int, ...] = ()
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and not t.is_meta and t.numel() > self.numel:  # meta: shapes, no memory
                self.numel, self.shape, self.op = t.numel(), tuple(t.shape), str(func)
        return out
