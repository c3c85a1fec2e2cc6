"""Memory of the benchmark's own process, in GB, for every benchmark that reports it."""
from __future__ import annotations

import os
import resource
import sys


def rss_gb() -> float:
    """Current resident set size of this process in GB (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9
    except OSError:  # pragma: no cover - non-Linux
        return 0.0


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far in GB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e9 if sys.platform == "darwin" else peak * 1024 / 1e9
