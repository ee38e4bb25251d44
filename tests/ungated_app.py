"""The real Function App with the gate out of the way: gate_files passes every collection
without looking at it, so a test can show what the later stages refuse on their own (the
spread combine's join refusing files that overlap, tests/test_combine_spread.py).
Everything else is the real orchestrator and the real activities."""

from __future__ import annotations

from typing import Any

from activities.stages import Payload
from tests.flaky_pipeline_app import real_app_with


def _passing(function: Any) -> Any:
    def gate_files(payload: Payload) -> dict[str, Any]:
        return {"ok": True, "report_url": "", "summary_url": ""}

    return gate_files


app = real_app_with({"gate_files": _passing})
