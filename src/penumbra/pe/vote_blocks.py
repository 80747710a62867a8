"""How many private rows one block of vote counting holds, and running blocks on threads.

A block's fp32 score matrix (rows × candidates) must fit a bounded memory budget, and on a CPU
stay in cache while it is reduced (penumbra.pe.voting counts votes block by block).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch

_DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
# CPU blocks: 1024 rows × ~1000 candidates of fp32 scores (4 MiB) are still in cache when
# reduced; blocks of up to 65536 rows (still the GPU's cap) were not: 0.6x faiss on 2 cores.
_CPU_BLOCK_ROWS = 1024


def _available_memory() -> int:
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2 * _DEFAULT_BUDGET_BYTES


def default_block_size(m: int, d: int, device: torch.device) -> int:
    """Private rows per block so the blocks' score matrices and inputs fit a bounded budget
    (on a CPU shared by the worker threads, each with its own block, and at most
    `_CPU_BLOCK_ROWS` rows so a block's scores are still in cache when they are reduced)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = free // 4
        cap = 65536
    else:
        budget = min(_DEFAULT_BUDGET_BYTES, _available_memory() // 8) // _cpu_workers()
        cap = _CPU_BLOCK_ROWS
    per_row = 4 * m + 16 * d + 64  # fp32 scores + the row in fp32/float64
    return int(max(1, min(cap, budget // max(per_row, 1))))


def _cpu_workers() -> int:
    """Worker threads for the CPU path: as many as torch would use for one op."""
    return max(1, torch.get_num_threads())


def _run_single_threaded_workers(run: Callable[[int], None], starts: range, workers: int) -> None:
    """Blocks on `workers` threads, each running torch single-threaded: one block per core
    beats every op split over all cores, whose barriers cost more than the small reductions
    themselves (and collapse when another process takes a core). torch's thread count is per
    thread; the process default that new threads start from is put back afterwards."""
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
            for _ in pool.map(run, starts):
                pass
    finally:
        torch.set_num_threads(workers)
