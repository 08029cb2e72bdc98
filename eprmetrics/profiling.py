"""Per-stage wall time and peak memory.

Host memory is the process's resident set size (RSS). On Linux the kernel's
high-water mark (``VmHWM``) is reset at the start of every stage through
``/proc/self/clear_refs``, so the recorded peak is exact and costs nothing while
the stage runs. Where that is not permitted, a background thread samples RSS
with :mod:`psutil` (the method of ``memory-profiler``). On CUDA,
``torch.cuda.max_memory_allocated`` is reset and read per stage.

Example:
    >>> from eprmetrics.profiling import Profiler
    >>> prof = Profiler()
    >>> with prof.stage("sum"):
    ...     _ = sum(range(1000))
    >>> prof.stages[0].name
    'sum'
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import time
from typing import Any, Iterator, Optional

import numpy as np
import psutil
import torch

__all__ = [
    "Stage",
    "Profiler",
    "storage_read_bytes",
    "mapped_file",
    "note_read",
    "mapped_reads",
    "passes_over",
    "current_rss",
    "reset_peak_rss",
    "read_rss",
    "progress_bar",
    "tqdm_options",
]

_STATUS = "/proc/self/status"
# Seconds of work before an automatic (``progress=None``) bar appears.
PROGRESS_DELAY = 2.0


# Bytes the package has asked for from each memory-mapped file (by path), counted where rows are read.
_MAPPED: dict[str, int] = {}
_MAPPED_LOCK = threading.Lock()


def mapped_file(data: object) -> Optional[str]:
    """The file behind a numpy array that is (a view of) a memory map, or None. ``np.asarray`` of a memmap
    is a plain array whose ``base`` chain leads to the map, so the chain is followed."""
    seen = 0
    while data is not None and seen < 32:
        if isinstance(data, np.memmap) and data.filename:
            return str(data.filename)
        data, seen = getattr(data, "base", None), seen + 1
    return None


def note_read(data: object, nbytes: int) -> None:
    """Count ``nbytes`` read from ``data`` when it is (a view of) a memory-mapped file; nothing otherwise.

    Every reader of a set's rows calls this (block reads, gathers, whole-set conversions), so the tally
    is the bytes asked for, whether the page cache or the disk served them: ``read_bytes`` of
    ``/proc/self/io`` sees only the disk, and ``rchar`` misses a memory map's page faults."""
    path = mapped_file(data)
    if path is None or nbytes <= 0:
        return
    with _MAPPED_LOCK:
        _MAPPED[path] = _MAPPED.get(path, 0) + int(nbytes)


def mapped_reads() -> dict[str, int]:
    """Bytes asked for from each memory-mapped file so far in this process (a snapshot)."""
    with _MAPPED_LOCK:
        return dict(_MAPPED)


def passes_over(stages: "list[Stage]", data: object) -> Optional[tuple[int, float]]:
    """(bytes read from the file behind ``data``, full passes = those bytes ÷ the array's bytes) over
    ``stages``; None when ``data`` is not memory-mapped."""
    path = mapped_file(data)
    size = int(getattr(data, "nbytes", 0))
    if path is None or size <= 0:
        return None
    read = sum((s.mapped_read or {}).get(path, 0) for s in stages)
    return read, read / size


def storage_read_bytes() -> Optional[int]:
    """Bytes this process has caused to be read from storage (Linux ``/proc/self/io``), or None."""
    try:
        with open("/proc/self/io") as fh:
            for line in fh:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss() -> int:
    """Resident set size of this process in bytes."""
    return psutil.Process(os.getpid()).memory_info().rss


def _read_hwm() -> Optional[int]:
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def read_rss() -> tuple[int, Optional[int]]:
    """(current RSS, peak RSS since the last :func:`reset_peak_rss`, or None where the kernel has no mark)."""
    return current_rss(), _read_hwm()


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False where that is not permitted."""
    return _reset_hwm()


def progress_bar(enabled: Optional[bool], total: int, desc: str, unit: str = "row") -> Any:
    """A tqdm bar over ``total`` rows (a context manager), or a context yielding None when disabled.

    ``enabled=None`` (the API's default) follows tqdm's convention: a bar on a terminal only, and
    only for work that lasts longer than :data:`PROGRESS_DELAY` seconds.
    """
    if enabled is False:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, **tqdm_options(enabled))


def tqdm_options(enabled: Optional[bool]) -> dict[str, Any]:
    """tqdm keywords for a progress switch: True shows, False hides, None follows tqdm's convention
    (a terminal only, after :data:`PROGRESS_DELAY` seconds of work)."""
    auto = enabled is None
    return {"leave": False, "disable": None if auto else not enabled, "delay": PROGRESS_DELAY if auto else 0}


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class _RssSampler:
    """Fallback peak-RSS meter: samples every ``interval`` seconds in a thread."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = current_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        proc = psutil.Process(os.getpid())
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, proc.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, current_rss())


@dataclasses.dataclass
class Stage:
    """One named stage: wall seconds, host RSS at start and peak, device peak; when it began (epoch
    seconds) and the bytes the process had fetched from storage during it (Linux ``read_bytes``: memory
    maps' page faults included, pages already in the page cache not)."""

    name: str
    seconds: float
    rss_start: int
    rss_peak: int
    device_peak: Optional[int] = None
    started: float = 0.0
    storage_read: Optional[int] = None
    mapped_read: Optional[dict[str, int]] = None

    @property
    def mapped_total(self) -> int:
        """Bytes asked for from all memory-mapped files during the stage."""
        return sum((self.mapped_read or {}).values())

    @property
    def rss_growth(self) -> int:
        """Peak RSS above the RSS at the start of the stage, in bytes."""
        return max(self.rss_peak - self.rss_start, 0)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "rss_growth": self.rss_growth, "mapped_total": self.mapped_total}


class Profiler:
    """Collects :class:`Stage` records; stages may not nest.

    Args:
        device: the torch device whose peak memory is tracked when it is CUDA.
        enabled: when False, ``stage`` only times (no memory bookkeeping).
    """

    def __init__(self, device: Optional[torch.device] = None, enabled: bool = True) -> None:
        self.device = device
        self.enabled = enabled
        self.stages: list[Stage] = []

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        cuda = self.device is not None and self.device.type == "cuda"
        rss_start = current_rss()
        sampler = None
        hwm_ok = self.enabled and _reset_hwm() and _read_hwm() is not None
        if self.enabled and not hwm_ok:
            sampler = _RssSampler()
        if cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        started, read0, mapped0 = time.time(), storage_read_bytes(), mapped_reads()
        start = time.perf_counter()
        try:
            yield
        finally:
            if cuda:
                torch.cuda.synchronize(self.device)
            seconds = time.perf_counter() - start
            if sampler is not None:
                peak = sampler.stop()
            elif hwm_ok:
                peak = _read_hwm() or current_rss()
            else:
                peak = current_rss()
            device_peak = torch.cuda.max_memory_allocated(self.device) if cuda else None
            read1 = storage_read_bytes()
            read = None if read0 is None or read1 is None else read1 - read0
            mapped = {f: b - mapped0.get(f, 0) for f, b in mapped_reads().items() if b > mapped0.get(f, 0)}
            self.stages.append(
                Stage(name, seconds, rss_start, max(peak, rss_start), device_peak, started, read, mapped)
            )

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def peak_rss(self) -> int:
        return max((s.rss_peak for s in self.stages), default=current_rss())
