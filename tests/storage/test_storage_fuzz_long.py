"""The storage fuzz tests at length: `pytest -m slow tests/storage` (TRIMQ_STORAGE_LONG sets
the number of examples per test, 2000 by default). Skipped unless slow tests are asked for."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import test_storage_checkpoint as test_checkpoint
import test_storage_compaction as test_compaction
import test_storage_recovery_fuzz as test_recovery_fuzz
from hypothesis import HealthCheck, settings

LONG = settings(max_examples=int(os.environ.get("TRIMQ_STORAGE_LONG", "2000")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TESTS: list[Callable[..., Any]] = [
    test_recovery_fuzz.test_random_histories_replay_identically,
    test_recovery_fuzz.test_random_truncation_with_random_histories,
    test_recovery_fuzz.test_bit_flips_in_the_newest_segment,
    test_recovery_fuzz.test_damage_in_a_sealed_segment_is_reported_with_its_offset,
    test_recovery_fuzz.test_junk_appended_to_the_newest_segment_is_cut,
    test_compaction.test_compaction_then_replay_is_replay,
    test_compaction.test_interleaved_writes_compactions_and_crashes,
    test_checkpoint.test_checkpoint_then_reopen_equals_full_replay,
]


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("test", TESTS, ids=lambda t: t.__name__)
def test_long(test: Callable[..., Any], request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long fuzz run: select it with -m slow")
    LONG(test)()
