"""Collector tuning once the server is up (see aigw.server.GC_THRESHOLD)."""

from __future__ import annotations

import gc

from aigw.server import GC_THRESHOLD, tune_gc


def test_tune_gc_freezes_start_up_objects_and_raises_the_threshold() -> None:
    before = gc.get_threshold()
    try:
        gc.unfreeze()
        assert gc.get_freeze_count() == 0
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() > 1000  # the imported modules and their objects
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
