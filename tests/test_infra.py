"""infra/ (azure.yaml + Bicep, docs/deploy.md): every Bicep file parses with a real Bicep
parser; checkov finds no failed check and every skip says why; the app settings are the ones
docs/settings.md requires and host.json assumes; the Event Grid filter passes every upload
api/events.py would route; the alerts carry docs/operations.md's own queries.

Nothing here talks to Azure: what a real subscription would say is not checked (the README,
"Deploy to Azure")."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.ingest.datasets import load_registry
from shared.ingest.events import BLOB_CREATED, IGNORED_APIS, decide
from shared.model.layout import Layout
from shared.model.locations import parse_location
from shared.model.request import DEFAULT_PATTERNS
from shared.model.settings import Settings, StorageAccount
from shared.model.sizing import PLAN_MEMORY, memory_limit
from tests.helpers import missing_tool

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
CHECKOV = ROOT / ".tools" / "checkov" / "bin" / "checkov"
HOST = json.loads((ROOT / "host.json").read_text())
SETTINGS_DOC = (ROOT / "docs" / "settings.md").read_text()
OPERATIONS_DOC = (ROOT / "docs" / "operations.md").read_text()

# App settings that are the Functions platform's, not the app's (docs/deploy.md explains each).
PLATFORM_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTSHARE",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "AZURE_CLIENT_ID",
}
NEVER_SET = {"PIPELINE_STORAGE_CONNECTION_STRING", "PIPELINE_LOCAL_ROOTS"}


@cache
def parse(path: Path) -> dict[str, Any]:
    try:
        from pycep import BicepParser
    except ImportError:
        missing_tool("pycep-parser is not installed (requirements-dev.txt; run ./dev setup)")
    return BicepParser().parse(text=path.read_text())


def bicep(name: str) -> dict[str, Any]:
    return parse(INFRA / name)


# -- a small evaluator for the Bicep expressions the checks below need --------------------
@dataclass(frozen=True)
class Unresolved:
    """A value only Azure knows (a resource's output, uniqueString, listKeys, ...)."""

    expression: str


def evaluate(value: Any, scope: dict[str, Any]) -> Any:
    """pycep's value with the names in ``scope`` filled in; what needs Azure stays Unresolved.
    pycep gives identifiers and string literals alike as str: a str naming a scope entry is
    taken as the identifier."""
    if isinstance(value, str):
        if value in scope:
            return scope[value]
        parts = re.split(r"\$\{([^}]*)\}", value)
        out = parts[0]
        for expression, text in zip(parts[1::2], parts[2::2], strict=True):
            resolved = lookup(expression, scope)
            if isinstance(resolved, Unresolved):
                return Unresolved(value)
            out += str(resolved) + text
        return out
    if isinstance(value, list):
        return [evaluate(v, scope) for v in value]
    if isinstance(value, dict) and "loop_type" in value:
        detail = value["loop_type"]["detail"]
        items = evaluate(detail["array_name"], scope)
        if isinstance(items, Unresolved):
            return items
        return [evaluate(value["config"], {**scope, detail["item_name"]: item}) for item in items]
    if isinstance(value, dict) and "function" in value:
        function = value["function"]
        args = {k: evaluate(v, scope) for k, v in function["parameters"].items()}
        if any(isinstance(a, Unresolved) for a in args.values()):
            return Unresolved(json.dumps(value))
        if function["type"] == "join":
            return args["delimiter"].join(args["input_array"])
        if function["type"] == "empty":
            return not args["item_to_test"]
        if function["type"] == "toLower":
            return str(next(iter(args.values()))).lower()
        return Unresolved(json.dumps(value))
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "conditional":
        operands = value["operator"]["operands"]
        condition = evaluate(operands["condition"], scope)
        if isinstance(condition, Unresolved):
            return condition
        return evaluate(operands["true_value" if condition else "false_value"], scope)
    if isinstance(value, dict) and "operator" in value:
        return Unresolved(json.dumps(value))
    if isinstance(value, dict):
        return {k: evaluate(v, scope) for k, v in value.items()}
    return value


def lookup(expression: str, scope: dict[str, Any]) -> Any:
    """``name`` or ``name.field`` (an object's field), else Unresolved."""
    name, *fields = expression.split(".")
    if name not in scope or not re.fullmatch(r"[A-Za-z_]\w*", name):
        return Unresolved(expression)
    value = scope[name]
    for field in fields:
        if not isinstance(value, dict) or field not in value:
            return Unresolved(expression)
        value = value[field]
    return value


def main_scope(**overrides: Any) -> dict[str, Any]:
    """main.bicep's parameters at their defaults (or ``overrides``) and its variables."""
    main = bicep("main.bicep")
    scope: dict[str, Any] = {"environmentName": "test", "location": "westeurope"}
    for name, param in main["parameters"].items():
        if "default" in param:
            scope[name] = param["default"]
    scope.update(overrides)
    for name, variable in main["variables"].items():  # in file order: later ones use earlier
        scope[name] = evaluate(variable["value"], scope)
    return scope


def module_scope(module: str, **overrides: Any) -> dict[str, Any]:
    """The parameters main.bicep passes to ``module`` (a module's symbolic name)."""
    outer = main_scope(**overrides)
    params = bicep("main.bicep")["modules"][module]["config"]["params"]
    return {name: evaluate(value, outer) for name, value in params.items()}


def allowed(param: dict[str, Any]) -> list[Any]:
    return next(d["argument"] for d in param["decorators"] if d["type"] == "allowed")


# -- every file parses; every module is used --------------------------------------------
def test_there_is_a_main_template_with_modules():
    assert INFRA / "main.bicep" in BICEP_FILES
    assert len(BICEP_FILES) > 5


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path):
    template = parse(path)
    assert template["resources"] or template["modules"]


def test_main_uses_every_module_and_every_loaded_file_exists():
    modules = bicep("main.bicep")["modules"]
    used = {(INFRA / m["detail"]["path"]).resolve() for m in modules.values()}
    assert used == {p.resolve() for p in BICEP_FILES if p.parent.name == "modules"}
    for path in BICEP_FILES:
        for loaded in re.findall(r"loadTextContent\('([^']+)'\)", path.read_text()):
            assert (path.parent / loaded).is_file(), f"{path.name} loads {loaded}"


def test_the_parameters_file_names_only_main_parameters_and_every_required_one():
    params = bicep("main.bicep")["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(params)
    assert {n for n, p in params.items() if "default" not in p} <= set(given)


def test_azure_yaml_deploys_this_folder_as_the_function_app_main_tags():
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (service_name, service), *others = project["services"].items()
    assert others == []
    assert (service["host"], service["language"], service["project"]) == ("function", "python", ".")
    assert main_scope()["serviceName"] == service_name
    hook = ROOT / project["hooks"]["postdeploy"]["posix"]["run"]
    assert hook.is_file() and os.access(hook, os.X_OK)
    assert {"infra", "azure.yaml", ".azure", ".tools"} <= set(
        (ROOT / ".funcignore").read_text().split()
    )


# -- checkov --------------------------------------------------------------------------------
@cache
def checkov_report() -> dict[str, Any]:
    if not CHECKOV.is_file():
        missing_tool(f"checkov is not installed in {CHECKOV.parent.parent} (run ./dev setup)")
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    done = subprocess.run(
        [CHECKOV, "-d", INFRA, "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.slow
def test_checkov_finds_no_failed_check_in_any_file():
    report = checkov_report()
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for c in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert summary["parsing_errors"] == 0  # checkov's own (older) parser read every file
    assert summary["passed"] >= 20 and summary["resource_count"] >= 40


@pytest.mark.slow
def test_every_skipped_check_gives_its_reason_inline():
    for check in checkov_report()["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 40, f"{check['check_id']} in {check['file_path']}: {reason!r}"
    for path in BICEP_FILES:
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"// checkov:skip=CKV\w*_\d+:.{40,}", line), line


# -- app settings against docs/settings.md and host.json ------------------------------------
@cache
def app_settings() -> list[dict[str, Any]]:
    return bicep("modules/function-app.bicep")["variables"]["appSettings"]["value"]


def deployed_settings(**overrides: Any) -> dict[str, Any]:
    scope = module_scope("functionApp", **overrides)
    return {s["name"]: evaluate(s["value"], scope) for s in app_settings()}


def documented_settings() -> set[str]:
    return set(re.findall(r"^\| `([A-Za-z_]+)` \|", SETTINGS_DOC, flags=re.M))


def required_settings() -> set[str]:
    section = SETTINGS_DOC.split("## Required in Azure", 1)[1].split("\nA deployment must not")[0]
    listed = set(re.findall(r"`([A-Z_]+)`", section))
    set_it = set(re.findall(r"^\| `([A-Z_]+)` \| [^|]*\(set it\)", SETTINGS_DOC, flags=re.M))
    assert listed and set_it
    return listed | set_it


def test_each_app_setting_is_set_once():
    names = [s["name"] for s in app_settings()]
    assert len(names) == len(set(names))


def test_the_app_sets_every_setting_docs_settings_md_requires():
    assert required_settings() - set(deployed_settings()) == set()


def test_every_app_setting_is_documented_or_the_platforms():
    unknown = set(deployed_settings()) - documented_settings() - PLATFORM_SETTINGS
    assert unknown == set()
    settings = deployed_settings()
    assert NEVER_SET & set(settings) == set()
    assert settings["PIPELINE_ALLOW_LOCAL_PATHS"] == "false"


def test_worker_processes_and_threads_are_what_host_json_assumes():
    settings = deployed_settings()
    processes = int(settings["FUNCTIONS_WORKER_PROCESS_COUNT"])
    threads = int(settings["PYTHON_THREADPOOL_THREAD_COUNT"])
    durable = HOST["extensions"]["durableTask"]
    # docs/host-settings.md: one header-read activity per process (h5py's lock), and
    # activities + orchestrators fill the processes x threads and no more.
    activities = durable["maxConcurrentActivityFunctions"]
    orchestrators = durable["maxConcurrentOrchestratorFunctions"]
    assert activities == processes
    assert activities + orchestrators == processes * threads
    # host.json's task hub name, log levels, ... are not overridden behind its back.
    assert not [n for n in settings if n.startswith("AzureFunctionsJobHost__")]


@pytest.mark.parametrize("plan", sorted(PLAN_MEMORY))
def test_each_plan_size_gives_the_app_a_usable_memory_ceiling(plan):
    main = bicep("main.bicep")["parameters"]["planSku"]
    module = bicep("modules/function-app.bicep")["parameters"]["planSku"]
    assert set(allowed(main)) == set(allowed(module)) == set(PLAN_MEMORY)
    settings = deployed_settings(planSku=plan)
    assert settings["PIPELINE_PLAN"] == plan
    env = {k: v for k, v in settings.items() if isinstance(v, str)}
    # The smallest ceiling docs/host-settings.md calls usable ("do not" is the 500 MB floor).
    assert memory_limit(env) > 1_000_000_000


def test_the_settings_read_back_as_the_pipeline_expects():
    settings = deployed_settings()
    account = settings["PIPELINE_STORAGE_ACCOUNT"]
    assert isinstance(account, Unresolved)  # the data account's name, known after deployment
    env = {k: v for k, v in settings.items() if isinstance(v, str)}
    parsed = Settings.from_env({**env, "PIPELINE_STORAGE_ACCOUNT": "vzarrdatatest"})
    scope = main_scope()
    assert parsed.allowed_containers == tuple(scope["sourceContainers"])
    layout = Layout.from_settings(parsed)
    assert [layout.work.container, layout.stores.container, layout.catalog.container] == [
        scope["workContainer"],
        scope["storeContainer"],
        scope["catalogContainer"],
    ]
    assert settings["PIPELINE_LOG_EXPORTER"] == "functions"
    # The default registry location is one the app may read (in its own work container).
    registry = parse_location(parsed.datasets, parsed, what="dataset registry")
    assert registry.container == scope["workContainer"]


def test_the_plan_is_linux_elastic_premium_with_python_3_12():
    resources = bicep("modules/function-app.bicep")["resources"]
    plan, app = resources["plan"]["config"], resources["app"]["config"]
    assert plan["sku"]["tier"] == "ElasticPremium" and plan["properties"]["reserved"] is True
    assert app["kind"] == "functionapp,linux"
    assert app["properties"]["siteConfig"]["linuxFxVersion"] == "Python|3.12"
    assert 'requires-python = ">=3.12,<3.13"' in (ROOT / "pyproject.toml").read_text()


# -- the Event Grid filter against api/events.py ---------------------------------------------
ACCOUNT = "vzarrdatatest"


def subscription_filter() -> dict[str, Any]:
    resource = bicep("modules/events.bicep")["resources"]["subscription"]["config"]
    return resource["config"]["properties"]["filter"]


def delivered(event: dict[str, Any], overrides: dict[str, Any]) -> bool:
    """Event Grid's decision for one event (string comparisons are case-insensitive)."""
    scope = module_scope("events", **overrides)
    spec = subscription_filter()
    if event["eventType"] not in spec["includedEventTypes"]:
        return False
    for advanced in spec["advancedFilters"]:
        values = [v.lower() for v in evaluate(advanced["values"], scope)]
        field = {"subject": event["subject"], "data.api": event["data"]["api"]}[advanced["key"]]
        field = field.lower()
        ok = {
            "StringBeginsWith": any(field.startswith(v) for v in values),
            "StringEndsWith": any(field.endswith(v) for v in values),
            "StringNotIn": field not in values,
        }[advanced["operatorType"]]
        if not ok:
            return False
    return True


def storage_event(container: str, path: str, api: str, event_type: str) -> dict[str, Any]:
    return {
        "id": f"{container}/{path}/{api}",
        "eventType": event_type,
        "subject": f"/blobServices/default/containers/{container}/blobs/{path}",
        "data": {
            "api": api,
            "url": f"https://{ACCOUNT}.blob.core.windows.net/{container}/{path}",
            "eTag": "0x8DE1",
            "contentLength": 10,
            "sequencer": "00a1",
        },
    }


PATHS = [
    "era5/t2m/a.nc", "era5/t2m/2024/b.nc4", "era5/t2m/c.h5", "era5/t2m/d.hdf5",
    "era5/t2m/e.NC", "era5/t2m/f.txt", "era5/t2m/g.nc.tmp", "era5/t2m2/h.nc", "era5/i.nc",
    "tas/j.nc", "k.nc",
]  # fmt: skip
EVENTS = [
    storage_event(container, path, api, event_type)
    for container in ("netcdf", "other")
    for path in PATHS
    for api in ("PutBlob", "PutBlockList", "CopyBlob", "FlushWithClose", *IGNORED_APIS)
    for event_type in (BLOB_CREATED, "Microsoft.Storage.BlobDeleted")
]
REGISTRY = {"t2m": {"source": "az://netcdf/era5/t2m"}, "tas": {"source": "az://netcdf/tas"}}
PREFIXES = [{"container": "netcdf", "prefix": "era5/t2m"}, {"container": "netcdf", "prefix": "tas"}]


def test_the_filter_delivers_the_types_and_suffixes_the_app_accepts():
    spec = subscription_filter()
    assert spec["includedEventTypes"] == [BLOB_CREATED]
    api_filter = next(f for f in spec["advancedFilters"] if f["key"] == "data.api")
    assert api_filter["operatorType"] == "StringNotIn"
    assert set(api_filter["values"]) == set(IGNORED_APIS)
    # The default file patterns are "*.<suffix>": Event Grid delivers exactly those suffixes.
    assert all(re.fullmatch(r"\*\.[A-Za-z0-9]+", p) for p in DEFAULT_PATTERNS)
    assert sorted(main_scope()["sourceSuffixes"]) == sorted(p[1:] for p in DEFAULT_PATTERNS)
    values = len(PREFIXES) + len(main_scope()["sourceSuffixes"]) + len(IGNORED_APIS)
    assert values <= 25  # Event Grid's limit across all advanced filters


@pytest.mark.parametrize(
    "overrides",
    [{}, {"datasetPrefixes": PREFIXES}],
    ids=["whole source containers", "dataset prefixes"],
)
def test_every_event_the_app_would_route_is_delivered(overrides):
    settings = Settings(
        account=StorageAccount(ACCOUNT),
        allowed_containers=tuple(main_scope()["sourceContainers"]),
        datasets=json.dumps({"datasets": REGISTRY}),
    )
    registry = load_registry(settings)
    routed = dropped = 0
    for event in EVENTS:
        decision = decide(
            event_id=event["id"],
            event_type=event["eventType"],
            data=event["data"],
            registry=registry,
            settings=settings,
        )
        passes = delivered(event, overrides)
        if decision.action == "route":
            routed += 1
            assert passes, f"{event['subject']} ({event['data']['api']}) is routed but dropped"
        elif not passes:
            dropped += 1
    assert routed == 5 * 4  # a.nc, b.nc4, c.h5, d.hdf5 under t2m, j.nc under tas; 4 apis
    assert dropped > len(EVENTS) / 2


def test_with_dataset_prefixes_only_their_uploads_are_delivered():
    def subjects(overrides: dict[str, Any]) -> set[str]:
        return {e["subject"].split("/blobs/")[1] for e in EVENTS if delivered(e, overrides)}

    by_prefix = subjects({"datasetPrefixes": PREFIXES})
    assert by_prefix == {
        "era5/t2m/a.nc", "era5/t2m/2024/b.nc4", "era5/t2m/c.h5", "era5/t2m/d.hdf5",
        "era5/t2m/e.NC", "tas/j.nc",
    }  # fmt: skip
    # Without prefixes the whole container is delivered: the app logs the rest as
    # unknown_dataset, which alert 10 counts.
    assert by_prefix < subjects({}) and "era5/i.nc" in subjects({})


# -- the alerts against docs/operations.md ------------------------------------------------
def operations_sections() -> dict[int, str]:
    sections = re.split(r"^### ", OPERATIONS_DOC, flags=re.M)[1:]
    return {int(s.split(".", 1)[0]): s for s in sections if re.match(r"\d+\.", s)}


def alert_rules() -> list[dict[str, Any]]:
    return bicep("modules/alerts.bicep")["variables"]["rules"]["value"]


def iso_duration(text: str) -> str:
    number, unit = text.split()
    return {"min": f"PT{number}M", "h": f"PT{number}H", "d": f"P{number}D"}[unit]


def test_each_alert_query_is_the_one_docs_operations_md_gives():
    queries = {int(p.name[:2]): p for p in (INFRA / "alerts").glob("*.kql")}
    with_query = {
        n for n, s in operations_sections().items() if "```kusto" in s and n != 9
    }  # 9 is the availability test: its query is for a dashboard
    assert set(queries) == with_query
    for number, path in queries.items():
        first = re.findall(r"```kusto\n(.*?)```", operations_sections()[number], flags=re.S)[0]
        assert path.read_text() == first, f"{path.name} differs from alert {number}"
    alerts = (INFRA / "modules" / "alerts.bicep").read_text()
    loaded = set(re.findall(r"loadTextContent\('\.\./alerts/([^']+)'\)", alerts))
    assert loaded == {p.name for p in queries.values()}


def test_each_alert_has_the_window_frequency_and_severities_of_the_table():
    rows = re.findall(r"^\| (\d+)\. [^|]*\| ([^|]*) \| [^|]* \| ([^|]*) \|", OPERATIONS_DOC, re.M)
    assert len(rows) == 11
    rules = alert_rules()
    for number, timing, severity in rows:
        if number == "9":
            continue
        window, frequency = (t.strip() for t in timing.split("(")[0].split(", every "))
        frequency = "1 h" if frequency == "hour" else frequency
        mine = [r for r in rules if r["title"].startswith(f"{number}. ")]
        assert mine, f"alert {number} has no rule"
        assert {r["window"] for r in mine} == {iso_duration(window)}
        assert {r["frequency"] for r in mine} == {iso_duration(frequency)}
        assert {r["severity"] for r in mine} == {int(s) for s in re.findall(r"Sev (\d)", severity)}


def test_the_health_availability_test_has_the_name_the_operations_query_uses():
    alerts = bicep("modules/alerts.bicep")
    query = re.findall(r"```kusto\n(.*?)```", operations_sections()[9], flags=re.S)[0]
    assert f'name == "{alerts["variables"]["healthTestName"]["value"]}"' in query
    test = alerts["resources"]["healthTest"]["config"]["properties"]
    assert test["Request"]["RequestUrl"].endswith("/api/health")
    assert len(test["Locations"]) == 3


def test_what_azd_and_the_tools_write_is_not_committed():
    # git's own matching, for folders and for a worktree's symbolic links to them alike
    paths = [".azure/dev/.env", ".tools", ".venv", ".worker", ".azurite"]
    found = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.stdout.split() == paths, found.stderr


# -- every alert can fire, on every plan docs/settings.md offers ----------------------------
IDLE_WORKER_BYTES = 152_000_000  # a worker with the libraries loaded (docs/host-settings.md)


def offered_plans() -> list[str]:
    row = next(line for line in SETTINGS_DOC.splitlines() if line.startswith("| `PIPELINE_PLAN`"))
    plans = re.findall(r"`(EP\d)`", row)
    assert plans, "docs/settings.md names no plan"
    return plans


def kql(number: int) -> str:
    return next((INFRA / "alerts").glob(f"{number:02d}-*.kql")).read_text()


def kql_number(number: int, pattern: str) -> float:
    found = re.search(pattern, kql(number))
    assert found, f"alert {number}: no threshold matching {pattern!r}"
    return float(found.group(1))


def seconds_of(duration: str) -> float:
    """An ISO 8601 duration of the alerts (PT15M, PT1H, P2D) in seconds."""
    found = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?)?", duration)
    assert found, duration
    days, hours, minutes = (int(g or 0) for g in found.groups())
    return days * 86400 + hours * 3600 + minutes * 60


def reach(number: int, plan: str) -> list[tuple[str, float, float]]:
    """(what, threshold, the most the app can produce in the alert's window on ``plan``):
    the alert can fire when the threshold is below that most."""
    settings = deployed_settings(planSku=plan)
    env = {k: v for k, v in settings.items() if isinstance(v, str)}
    scope = main_scope(planSku=plan)
    durable = HOST["extensions"]["durableTask"]
    slots = durable["maxConcurrentActivityFunctions"] * scope["maximumInstances"]
    if number in (1, 2, 3, 9):
        return [("any row", 0, 1)]  # a failed run, a failed health check: one is enough
    rules = [r for r in alert_rules() if r["title"].startswith(f"{number}. ")]
    window = seconds_of(rules[0]["window"])
    if number == 4:  # activity failures per stage and code in the window: one per activity
        return [("failures", kql_number(4, r"failures > (\d+)"), slots * window / 60)]
    if number == 5:  # 'will be retried' records: each slot can fail every retry interval
        retry_seconds = Settings().retry_first_interval_ms / 1000
        most = slots * window / retry_seconds
        return [("retries", float(r["threshold"]), most) for r in rules]
    if number == 6:  # a run open longer than `limit`, within the query's window
        limit = kql_number(6, r"let limit = (\d+)h;") * 3600
        return [("hours open", limit, window)]
    if number == 7:  # the peak over the ceiling in force: a combine that ends is under it
        ratio = kql_number(7, r"let ratio_limit = ([\d.]+);")
        ceiling = memory_limit(env)
        # Firing only on growth: the idle worker alone must stay under the threshold.
        assert ratio * ceiling > IDLE_WORKER_BYTES, f"{plan}: alert 7 fires on an idle worker"
        return [("peak / ceiling", ratio, 1.0)]
    if number == 8:  # an invocation over 30 minutes: it can last until functionTimeout
        limit_ms = kql_number(8, r"duration > (\d+)")
        hours, minutes, seconds = (int(p) for p in HOST["functionTimeout"].split(":"))
        return [("ms", limit_ms, (hours * 3600 + minutes * 60 + seconds) * 1000)]
    if number == 10:  # uploads ignored: one record per event delivered, Event Grid's pace
        return [("ignored", kql_number(10, r"ignored > (\d+)"), float("inf"))]
    if number == 11:  # a watcher's failed runs: one per quiet period at most
        failed = kql_number(11, r"failed >= (\d+)")
        return [("failed runs", failed - 1, window / Settings().quiet_seconds)]
    raise AssertionError(f"alert {number} has no reachability rule here: add one")


def test_every_alert_threshold_can_be_reached_on_every_plan_the_settings_offer():
    numbers = [int(n) for n in re.findall(r"^\| (\d+)\. ", OPERATIONS_DOC, flags=re.M)]
    assert len(numbers) == 11
    for plan in offered_plans():
        for number in numbers:
            for what, threshold, most in reach(number, plan):
                assert threshold < most, (
                    f"alert {number} on {plan}: {what} threshold {threshold} can never be "
                    f"reached (at most {most})"
                )


def test_no_alert_waits_for_a_memory_figure_the_ceiling_stops_first():
    """An absolute memory threshold (alert 7 had 2.5 GB) is above EP1's ceiling with 4
    processes (1.775 GB): combine stops with memory_limit before the alert could fire."""
    for path in sorted((INFRA / "alerts").glob("*.kql")):
        for found in re.findall(r"memory_bytes\) > ([\d.e]+)", path.read_text()):
            for plan in offered_plans():
                env = {
                    k: v for k, v in deployed_settings(planSku=plan).items() if isinstance(v, str)
                }
                assert float(found) < memory_limit(env), f"{path.name} on {plan}"
    assert "memory_limit_bytes" in kql(7) and "peak_memory_bytes" in kql(7)


def test_the_durable_storage_provider_is_the_one_the_decision_chose():
    """docs/decisions/0004: Azure Storage, on the identity-based AzureWebJobsStorage
    connection, whose account carries the roles that provider needs."""
    decision = (ROOT / "docs" / "decisions" / "0004-durable-storage-provider.md").read_text()
    assert "**Azure Storage, explicitly**" in decision
    provider = HOST["extensions"]["durableTask"]["storageProvider"]
    assert "type" not in provider  # Azure Storage; DTS would be "azureManaged"
    connection = provider["connectionName"]
    settings = deployed_settings()
    assert {f"{connection}__accountName", f"{connection}__credential"} <= set(settings)
    assert connection not in settings  # no connection string: the identity
    hub_roles = bicep("modules/roles.bicep")["variables"]["hubRoles"]["value"]
    assert [r["operator"]["operands"]["operand_2"] for r in hub_roles] == [
        "storageBlobDataOwner",
        "storageQueueDataContributor",
        "storageTableDataContributor",
    ]


def test_the_staging_slot_has_its_own_task_hub_share_and_folders_which_stay_with_it():
    """docs/runbooks/deploy.md: the slot a release is smoke-tested in before the swap. Its
    task hub, content share and pipeline folders are slot settings, so a swap leaves
    production on host.json's hub with its own folders; no Event Grid subscription reaches it."""
    template = bicep("modules/function-app.bicep")
    variables = template["variables"]
    overrides = variables["stagingOverrides"]["value"]
    hub = variables["stagingHub"]["value"]
    sticky = variables["stickySettings"]["value"]
    hub_setting = "AzureFunctionsJobHost__extensions__durableTask__hubName"
    assert set(sticky) == {*overrides, hub_setting}
    assert hub != HOST["extensions"]["durableTask"]["hubName"]
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", hub) and len(hub) <= 45
    assert {"WEBSITE_CONTENTSHARE", "PIPELINE_WORK_AREA", "PIPELINE_STORE_ROOT",
            "PIPELINE_CATALOG", "PIPELINE_DATASETS"} <= set(overrides)  # fmt: skip
    assert json.loads(overrides["PIPELINE_DATASETS"]) == {"datasets": {}}
    resources = template["resources"]
    assert set(resources["staging"]["config"]) >= {"condition", "config"}
    slot = resources["staging"]["config"]["config"]
    assert slot["properties"]["siteConfig"]["appSettings"] == "stagingSettings"
    assert slot["identity"] == resources["app"]["config"]["identity"]
    names = resources["slotSettings"]["config"]["config"]["properties"]["appSettingNames"]
    assert names == "stickySettings"
    # Event Grid delivers to the production app's id only.
    events = bicep("main.bicep")["modules"]["events"]["config"]["params"]["functionAppId"]
    assert "functionApp" in json.dumps(events) and "staging" not in json.dumps(events)


def test_the_memory_ceilings_the_operations_page_quotes_are_the_ones_the_code_derives():
    section = operations_sections()[7]
    quoted = dict(
        (plan, float(gb))
        for gb, plan in re.findall(r"([\d.]+) GB (?:on|and) (EP\d)", section.replace("\n", " "))
    )
    assert set(quoted) == set(offered_plans()), section[:400]
    for plan, gb in quoted.items():
        env = {k: v for k, v in deployed_settings(planSku=plan).items() if isinstance(v, str)}
        assert gb * 1e9 == pytest.approx(memory_limit(env), rel=1e-3), plan
