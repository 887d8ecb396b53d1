"""Machine facts and memory figures come from psutil and agree with an independent reading."""

from __future__ import annotations

import os

import numpy as np
import psutil

from semsearch_common.machine import machine_info, rss_mb, track_peak_rss


def test_machine_info_matches_the_os() -> None:
    info = machine_info(threads=2)
    assert info["cores"] == os.cpu_count()
    assert info["threads"] == 2
    assert abs(info["memory_gib"] - psutil.virtual_memory().total / 2**30) < 0.1


def test_peak_rss_sees_a_temporary_allocation() -> None:
    with track_peak_rss(interval=0.001) as peak:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        block.sum()
        del block
    assert peak.peak_mb - peak.start_mb > 48  # most of the 64 MiB, whatever the allocator returns
    assert abs(rss_mb() - psutil.Process().memory_info().rss / 2**20) < 16
