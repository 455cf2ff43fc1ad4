"""The peak of live CPU bytes torch allocated during a call, for the benchmarks that report memory.

torch.profiler's allocation records (``profile_memory=True``) are replayed in time order: the peak of their
running sum is the most memory torch held at once during ``fn()`` beyond what was live before it (the same
measure as tests/integrations/_memory.py). Imported by the scripts beside it (``python benchmarks/X.py``
puts this folder on ``sys.path``).
"""

from __future__ import annotations

from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile


def peak_bytes(fn) -> int:
    """Peak of the bytes torch allocated on the CPU and had not freed, during ``fn()``."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    sizes, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        e = stack.pop()
        if e.tag == _EventType.Allocation:
            sizes.append((e.start_time_ns, e.extra_fields.alloc_size))
        stack.extend(e.children)
    live = peak = 0
    for _, n in sorted(sizes):
        live += n
        peak = max(peak, live)
    return peak
