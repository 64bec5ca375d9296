"""Benchmark harness: side-by-side timing in one process, peak memory, results as JSON.

Machines are shared and noisy, so speed is reported as ratios of two callables timed
alternately in the same run (after a warm-up), with the median over rounds. Every script
takes ``--quick`` (reduced sizes, under 60 s on 2 cores) and ``--out PATH`` (default
``benchmarks/results/<area>.json``) and records the command, versions, machine and date.
Scripts whose figures are per-step times of allocation-heavy code call
:func:`steady_allocator` first (bench_dp), so page faults do not decide the ratio.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]

if "VEIL_DATA" not in os.environ and (ROOT.parent / "shared" / "data").is_dir():
    os.environ["VEIL_DATA"] = str((ROOT.parent / "shared" / "data").resolve())
os.environ.setdefault("VEIL_QUIET", "1")


def parser(area: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="reduced sizes, under 60 s on 2 cores")
    p.add_argument("--out", type=Path, default=RESULTS / f"{area}.json", help="results JSON")
    return p


def steady_allocator() -> str:
    """Keep freed memory in the process, so no timed step pays the OS for fresh pages.

    glibc hands large blocks back to the OS and maps new ones later; a step that allocates
    them then pays a page fault per 4 KiB (measured: a plain ``mnist-cnn`` step at batch 256
    took 3,700 faults and 16.7 ms in one process, 16 faults and 13.8 ms in the next),
    and which state a step meets changes from run to run. Raising the mmap and trim
    thresholds makes every callable in a comparison meet the same, fault-free state.
    Returns what was done, for the results file.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return "default allocator (no glibc mallopt)"
    m_trim_threshold, m_mmap_threshold = -1, -3
    done = mallopt(m_mmap_threshold, 32 << 20) and mallopt(m_trim_threshold, 1 << 30)
    return "glibc mmap threshold 32 MiB, trim threshold 1 GiB" if done else "default allocator"


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def compare(
    a: Callable[[], object], b: Callable[[], object], *, rounds: int = 5, warmup: int = 1
) -> dict:
    """Time ``a`` and ``b`` alternately; ``ratio`` is the median of b_time / a_time per round."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for i in range(rounds):
        order = (a, b) if i % 2 == 0 else (b, a)  # alternate who goes first
        for fn in order:
            (ta if fn is a else tb).append(timed(fn)[0])
    return {
        "a_median_s": statistics.median(ta),
        "b_median_s": statistics.median(tb),
        "ratio_b_over_a": statistics.median(y / x for x, y in zip(ta, tb, strict=True)),
        "rounds": rounds,
    }


def rss_bytes() -> int:
    """The process's resident memory now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn: Callable[[], object], interval: float = 0.005) -> tuple[object, int]:
    """Run ``fn``; return its result and the peak resident memory above the start, in bytes."""
    start, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes() - start)
            time.sleep(interval)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        result = fn()
    finally:
        done.set()
        t.join()
    return result, max(peak[0], rss_bytes() - start)


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "gpu": gpu, "python": platform.python_version()}


def versions(*packages: str) -> dict:
    out = {}
    for name in ("veil", "torch", "numpy", *packages):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_results(area: str, results: dict, args: argparse.Namespace, *packages: str) -> Path:
    """Write ``results`` plus the command, versions, machine and date to ``args.out``."""
    doc = {
        "area": area,
        "quick": bool(args.quick),
        "command": " ".join(["python", *sys.argv]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(*packages),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"wrote {args.out}")
    return args.out


def round_robin(fns: dict[str, Callable[[], object]], *, rounds: int, warmup: int = 1) -> dict:
    """Time every callable once per round, in rotating order; return the times per name."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(fns[name])[0])
    return times


def ratios(times: dict[str, list[float]], base: str) -> dict[str, float]:
    """Median over rounds of time[name] / time[base]: >1 means ``name`` is slower than ``base``."""
    return {
        n: statistics.median(t / b for t, b in zip(ts, times[base], strict=True))
        for n, ts in times.items()
    }
