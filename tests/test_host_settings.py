"""host.json: the settings the app relies on are there, every name is a documented one, and
docs/host-settings.md explains every key (so the page cannot fall behind the file)."""

import json
import re
from pathlib import Path

import pytest

from devhost.durable import index_app

ROOT = Path(__file__).resolve().parent.parent
HOST = json.loads((ROOT / "host.json").read_text())
DOC = (ROOT / "docs" / "host-settings.md").read_text()
DURABLE = HOST["extensions"]["durableTask"]
LOG_LEVELS = HOST["logging"]["logLevel"]

# Measured by bench/combine_memory.py at 10,000 files (docs/failure-modes.md), on local disk.
VERIFY_SECONDS_10K = 601
VERIFY_PEAK_BYTES_10K = 533_000_000
PREMIUM_GUARANTEED_SECONDS = 60 * 60  # "Premium plan execution is only guaranteed for 60 minutes"
EP1_MEMORY_BYTES = 3_500_000_000  # the smallest Premium instance
HOST_ALLOWANCE_BYTES = 500_000_000  # the Functions host process itself (an estimate)

# Names from Microsoft's references (docs/host-settings.md, Sources): host.json v2+ and the
# Durable Functions 2.x host.json table, plus DurableTaskOptions.OverridableExistingInstanceStates.
TOP_LEVEL_KEYS = {
    "version", "aggregator", "concurrency", "customHandler", "extensions", "extensionBundle",
    "functions", "functionTimeout", "healthMonitor", "logging", "managedDependency",
    "singleton", "watchDirectories", "watchFiles",
}  # fmt: skip
DURABLE_KEYS = {
    "hubName", "defaultVersion", "versionMatchStrategy", "versionFailureStrategy",
    "storageProvider", "tracing", "httpSettings", "notifications",
    "maxConcurrentActivityFunctions", "maxConcurrentOrchestratorFunctions",
    "maxConcurrentEntityFunctions", "extendedSessionsEnabled",
    "extendedSessionIdleTimeoutInSeconds", "useAppLease", "useGracefulShutdown",
    "maxEntityOperationBatchSize", "maxOrchestrationActions",
    "storeInputsInOrchestrationHistory", "maxGrpcMessageSizeInBytes", "grpcHttpClientTimeout",
    "overridableExistingInstanceStates",
}  # fmt: skip
STORAGE_PROVIDER_KEYS = {
    "connectionName", "connectionStringName", "controlQueueBatchSize",
    "controlQueueBufferThreshold", "controlQueueVisibilityTimeout",
    "fetchLargeMessagesAutomatically", "maxQueuePollingInterval", "partitionCount",
    "trackingStoreConnectionName", "trackingStoreConnectionStringName",
    "trackingStoreNamePrefix", "useLegacyPartitionManagement", "useTablePartitionManagement",
    "workItemQueueVisibilityTimeout", "queueClientMessageEncoding",
}  # fmt: skip
TRACING_KEYS = {"traceInputsAndOutputs", "traceReplayEvents"}
CONCURRENCY_KEYS = {"dynamicConcurrencyEnabled", "snapshotPersistenceEnabled"}
LOGGING_KEYS = {"fileLoggingMode", "logLevel", "console", "applicationInsights"}
SAMPLING_KEYS = {
    "isEnabled", "maxTelemetryItemsPerSecond", "evaluationInterval",
    "initialSamplingPercentage", "samplingPercentageIncreaseTimeout",
    "samplingPercentageDecreaseTimeout", "minSamplingPercentage", "maxSamplingPercentage",
    "movingAverageRatio", "excludedTypes", "includedTypes",
}  # fmt: skip
LOG_LEVEL_VALUES = {"Trace", "Debug", "Information", "Warning", "Error", "Critical", "None"}
SAMPLING_TYPES = {"Dependency", "Event", "Exception", "PageView", "Request", "Trace"}


def _seconds(timespan: str) -> int:
    hours, minutes, seconds = (int(part) for part in timespan.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def _app_setting(name: str) -> int:
    """A value the page prescribes for an app setting (its first table)."""
    match = re.search(rf"^\| `{name}` \| `(\d+)` \|", DOC, re.MULTILINE)
    assert match, f"docs/host-settings.md no longer prescribes {name}"
    return int(match.group(1))


def _lower(keys: set[str]) -> set[str]:
    return {key.lower() for key in keys}


def test_host_json_is_a_functions_v4_file_with_the_v4_extension_bundle():
    assert HOST["version"] == "2.0"
    assert HOST["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }


def test_a_request_for_a_running_dataset_cannot_replace_its_run():
    # One run per dataset: starting pipeline-<dataset> while it runs must fail, not restart it.
    assert DURABLE["overridableExistingInstanceStates"] == "NonRunningStates"


def test_runs_stay_in_the_same_task_hub():
    assert DURABLE["hubName"] == "VirtualZarrPipeline"
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", DURABLE["hubName"])  # the hub name rule


def test_the_timeout_is_within_the_premium_guarantee_and_leaves_verify_room():
    timeout = _seconds(HOST["functionTimeout"])
    assert timeout <= PREMIUM_GUARANTEED_SECONDS
    # Verify was measured on local disk; against Blob Storage it is slower: keep 2x at least.
    assert timeout >= 2 * VERIFY_SECONDS_10K


def test_extended_sessions_stay_off_as_they_exist_only_for_dotnet():
    assert DURABLE["extendedSessionsEnabled"] is False


def test_activity_and_orchestrator_slots_fit_the_python_worker_slots():
    processes = _app_setting("FUNCTIONS_WORKER_PROCESS_COUNT")
    threads = _app_setting("PYTHON_THREADPOOL_THREAD_COUNT")
    activities = DURABLE["maxConcurrentActivityFunctions"]
    orchestrators = DURABLE["maxConcurrentOrchestratorFunctions"]
    # Nothing the Durable runtime loads waits for a Python thread (it could not move).
    assert activities + orchestrators <= processes * threads
    # h5py's lock is process-wide: header reads only run side by side in separate processes.
    assert activities <= processes


def test_every_activity_slot_running_verify_at_its_measured_peak_fits_the_smallest_instance():
    slots = DURABLE["maxConcurrentActivityFunctions"]
    assert slots * VERIFY_PEAK_BYTES_10K + HOST_ALLOWANCE_BYTES <= EP1_MEMORY_BYTES


def test_every_function_sends_its_own_records_at_information():
    names = {function.get_function_name() for function in index_app().functions}
    assert names, "the app registers no functions"
    missing = sorted(n for n in names if LOG_LEVELS.get(f"Function.{n}.User") != "Information")
    assert missing == [], f"add Function.<name>.User: Information to host.json for {missing}"


def test_invocations_exceptions_and_batch_records_are_never_sampled():
    sampling = HOST["logging"]["applicationInsights"]["samplingSettings"]
    excluded = set(sampling["excludedTypes"].split(";"))
    assert {"Request", "Exception", "Trace"} <= excluded
    assert excluded <= SAMPLING_TYPES


def test_no_host_level_retry_policy_pretends_to_cover_our_triggers():
    # Runtime retry policies exist only for Timer, Event Hubs, Kafka and Cosmos DB triggers.
    assert "retry" not in HOST


def test_host_json_uses_only_documented_setting_names_and_levels():
    assert set(HOST) <= TOP_LEVEL_KEYS
    assert _lower(set(DURABLE)) <= _lower(DURABLE_KEYS)
    assert _lower(set(DURABLE.get("storageProvider", {}))) <= _lower(STORAGE_PROVIDER_KEYS)
    assert set(DURABLE.get("tracing", {})) <= TRACING_KEYS
    assert set(HOST.get("concurrency", {})) <= CONCURRENCY_KEYS
    assert set(HOST["logging"]) <= LOGGING_KEYS
    assert set(HOST["logging"]["applicationInsights"]) <= {"samplingSettings"}
    assert set(HOST["logging"]["applicationInsights"]["samplingSettings"]) <= SAMPLING_KEYS
    assert set(LOG_LEVELS.values()) <= LOG_LEVEL_VALUES


def _code_spans() -> list[str]:
    return re.findall(r"`([^`]+)`", DOC)


def _documented_words() -> set[str]:
    return {w for span in _code_spans() for w in re.split(r"[^A-Za-z0-9_]+", span) if w}


def _keys(node: object, path: str = "") -> list[str]:
    if not isinstance(node, dict):
        return []
    found = []
    for key, value in node.items():
        found.append(f"{path}{key}")
        found.extend(_keys(value, f"{path}{key}."))
    return found


@pytest.mark.parametrize(
    "key",
    [*HOST, *(f"extensions.durableTask.{key}" for key in _keys(DURABLE))],
)
def test_every_setting_in_host_json_is_explained_in_the_doc(key):
    name = key.rsplit(".", 1)[-1]
    assert name in _documented_words(), f"docs/host-settings.md does not explain `{key}`"


def test_every_log_category_in_host_json_is_explained_in_the_doc():
    spans = _code_spans()
    for category in LOG_LEVELS:
        user = re.fullmatch(r"Function\.(\w+)\.User", category)
        if user:
            assert user.group(1) in spans, f"docs/host-settings.md does not list {category}"
        else:
            assert any(category in span for span in spans), category
