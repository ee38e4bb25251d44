"""Sizing that matches the plans: the memory ceiling of combine and verify comes from the
instance's memory and the number of worker processes sharing it, and only one of them runs
per instance at a time (a lock every process of the instance sees)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from shared.model.errors import BadRequest
from shared.model.settings import Settings
from shared.model.sizing import HeavySlotBusy, heavy_ceiling, heavy_slot, memory_limit

ROOT = Path(__file__).resolve().parent.parent


def test_the_ceiling_is_the_plans_memory_less_what_the_other_processes_need():
    assert memory_limit({}) == 2_975_000_000  # EP1, one process
    ep1_four = {"PIPELINE_PLAN": "EP1", "FUNCTIONS_WORKER_PROCESS_COUNT": "4"}
    assert memory_limit(ep1_four) == 1_775_000_000
    assert memory_limit({"PIPELINE_PLAN": "ep3", "FUNCTIONS_WORKER_PROCESS_COUNT": "4"}) == (
        10_700_000_000
    )
    assert memory_limit({"PIPELINE_INSTANCE_MEMORY_BYTES": "2000000000"}) == 1_700_000_000
    assert memory_limit({**ep1_four, "PIPELINE_MEMORY_LIMIT_BYTES": "123456789"}) == 123456789
    assert Settings.from_env(ep1_four).memory_limit_bytes == 1_775_000_000
    assert heavy_ceiling(3_500_000_000, 10) == 500_000_000  # a floor, not a negative number


def test_a_plan_the_app_does_not_know_is_refused_naming_the_setting():
    with pytest.raises(BadRequest, match="PIPELINE_PLAN='Y1'"):
        Settings.from_env({"PIPELINE_PLAN": "Y1"})
    with pytest.raises(BadRequest, match="FUNCTIONS_WORKER_PROCESS_COUNT='many'"):
        Settings.from_env({"FUNCTIONS_WORKER_PROCESS_COUNT": "many"})


HOLDER = """
import sys, time
from pathlib import Path
from shared.model.sizing import heavy_slot
folder = Path(sys.argv[1])
with heavy_slot("combine", 5, str(folder)):
    (folder / "held").write_text("")
    while not (folder / "release").exists():
        time.sleep(0.02)
"""


def test_a_second_heavy_activity_on_the_instance_waits_for_the_first(tmp_path):
    """Another worker process of the same instance holds the slot (a real process): verify
    waits until combine releases it, and gives up with the retryable instance_busy when the
    wait is too long."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(tmp_path)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "held").exists():
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.02)
        with pytest.raises(HeavySlotBusy) as busy, heavy_slot("verify", 0.3, str(tmp_path)):
            pass
        assert busy.value.retryable and busy.value.code == "instance_busy"
        assert "one combine activity at a time per instance" in busy.value.message
        (tmp_path / "release").write_text("")
        with heavy_slot("verify", 30, str(tmp_path)):
            assert holder.wait(timeout=30) == 0  # the holder has let go
    finally:
        holder.kill()


def test_a_dead_holder_releases_the_slot(tmp_path):
    """A worker killed mid-combine does not keep the slot: the operating system drops it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(tmp_path)], cwd=ROOT
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "held").exists():
        assert time.monotonic() < deadline and holder.poll() is None
        time.sleep(0.02)
    holder.kill()
    holder.wait(timeout=30)
    with heavy_slot("verify", 5, str(tmp_path)):
        pass
