"""No activity input or output grows with the number of files beyond a batch: at 2,000 and
10,000 files every activity payload stays under 16 KB, and every orchestration history under
a stated bound. The activities are stand-ins (tests/budget_app.py: real result shapes at
their largest, no I/O) behind the real orchestrators on devhost."""

from __future__ import annotations

import json

import pytest

from devhost.durable import DurableHost
from shared.model.plan import PipelineInput, RunPolicy
from shared.model.request import PipelineRequest

PAYLOAD_LIMIT = 16 * 1024  # our own budget (Durable moves messages over 45 KB to blobs)
HISTORY_LIMIT = 300 * 1024  # bytes of one instance's history (the pipeline's, at 10,000 files)
HISTORY_EVENTS_LIMIT = 1500


# The defaults (batches of 200, 10 files per call, one combine activity), and a spread
# combine: 100 merge_batch activities in the pipeline's own history, as 1,000,000 files
# make with the default PIPELINE_COMBINE_BATCH_FILES.
SPREAD = RunPolicy(combine_spread_files=1_000, combine_batch_files=100)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("files", "policy"),
    [(2_000, RunPolicy()), (10_000, RunPolicy()), (10_000, SPREAD)],
    ids=["2000", "10000", "10000-spread"],
)
def test_payloads_and_histories_stay_small_at_scale(tmp_path, files, policy, capsys):
    request = PipelineRequest.from_dict({"source": f"synthetic://{files}", "dataset_id": "big"})
    run = PipelineInput(request, policy)
    with DurableHost(tmp_path / "state", app_module="tests.budget_app", workers=2) as host:
        host.start_new("pipeline", "pipeline-big", json.dumps(run.to_dict()))
        status = host.wait_for("pipeline-big", timeout=900)
        sizes = host.payload_sizes()
        instances = len(host.instances())
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["files"]["validated"] == files
    # The pipeline and one batch per batch_size files per stage (validate, generate, verify); a
    # spread combine adds one combine_wave per wave of parallel_batches merge batches.
    merges = -(-files // policy.combine_batch_files) if files > policy.combine_spread_files else 0
    assert instances == 1 + 3 * (files // policy.batch_size) + -(-merges // policy.parallel_batches)
    with capsys.disabled():  # the figures belong in the CI log
        spread = " spread" if policy is SPREAD else ""
        print(f"\npayload budget, {files} files{spread} (bytes): {json.dumps(sizes)}")
    for name in (
        "activity_input",
        "activity_output",
        "sub_orchestration_input",
        "sub_orchestration_output",
        "custom_status",
    ):
        assert sizes[name] <= PAYLOAD_LIMIT, (name, sizes[name])
    assert sizes["history_bytes"] <= HISTORY_LIMIT, sizes
    assert sizes["history_events"] <= HISTORY_EVENTS_LIMIT, sizes
