"""The operator page in a real browser: Debian's chromium, headless, driven by Playwright,
against the local host serving the app (real runs on files these tests write).

What an operator does at 3am, through the page only: read which file broke which rule and
what to do; approve a run that waits; unpublish a version and see the earlier one current.
Every value the page shows comes from user data somewhere (file names, reasons), so a file
named like HTML must show as text and run nothing."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import DurableHost
from devhost.local import exported
from devhost.samples import SampleSpec, write_sample_files
from devhost.server import DevServer
from shared.model.settings import Settings
from tests.helpers import call, missing_tool

CHROMIUM = "/usr/bin/chromium"
SPEC = SampleSpec(files=3, lat=4, lon=6)
HOSTILE = "<img src=x onerror=window.pwned=1>"
TIMEOUT_MS = 30_000


def browser_or_missing() -> Any:
    """Playwright's chromium driver with Debian's chromium (Playwright's own browser build
    cannot be downloaded here)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_tool("playwright is not installed (requirements-dev.txt; run ./dev setup)")
    if not Path(CHROMIUM).is_file():
        missing_tool("chromium is not installed (apt-get install chromium)")
    return sync_playwright


@dataclass
class Host:
    server: DevServer
    settings: Settings
    root: Path

    def url(self, path: str) -> str:
        return f"{self.server.base_url}/api/{path}"

    def source(self, name: str, spec: SampleSpec = SPEC) -> Path:
        folder = self.root / "sources" / name
        write_sample_files(folder, spec)
        return folder

    def submit(self, source: Path, dataset: str, **options: Any) -> str:
        body = {"source": str(source), "dataset_id": dataset, "options": options}
        answer = call("POST", self.url("pipelines"), body)
        assert answer.status == 202, answer.json()
        return str(answer.json()["instance_id"])

    def wait(self, instance_id: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            view = call("GET", self.url(f"pipelines/{instance_id}")).json()
            if done(view):
                return dict(view)
            time.sleep(0.1)
        raise AssertionError(f"{instance_id} never got there: {view}")

    def finished(self, instance_id: str) -> dict[str, Any]:
        return self.wait(instance_id, lambda v: v["runtime_status"] in ("Completed", "Failed"))


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("operator")
    settings = Settings(
        allow_local_paths=True,
        work_area=str(root / "work"),
        store_root=str(root / "stores"),
        catalog=str(root / "catalog"),
    )
    with (
        exported(settings),
        DurableHost(root / "state", workers=2) as durable,
        DevServer(durable) as server,
    ):
        yield Host(server, settings, root)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with browser_or_missing()() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    opened = context.new_page()
    opened.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    opened.on(
        "console",
        lambda message: (
            problems.append(f"console {message.type}: {message.text}")
            # an answer of 4xx the page shows is no script error (Chromium logs each one)
            if message.type == "error" and "responded with a status of 4" not in message.text
            else None
        ),
    )
    yield opened
    context.close()
    assert problems == []  # no script error, no refused inline script or style (CSP)


def open_page(page: Any, host: Host) -> None:
    page.goto(host.url("operator"))
    page.wait_for_selector("#updated:has-text('updated')")


def card(page: Any, section: str, dataset: str) -> Any:
    return page.locator(f"#{section} .card[data-dataset='{dataset}']")


@pytest.mark.slow
def test_a_failing_run_shows_its_file_variable_rule_and_what_to_do_as_text(host: Host, page):
    source = host.source("broken")
    # One more day whose tas is float64: the gate refuses the collection and names it. Its
    # name is HTML: the page must show it as text and run nothing.
    odd = write_sample_files(
        host.root / "odd", SampleSpec(files=1, lat=4, lon=6, tas_dtype="f8", first_index=3)
    )[0]
    shutil.copy(odd, source / f"{HOSTILE}.nc")
    instance_id = host.submit(source, "tas-broken")
    failed = host.finished(instance_id)
    assert failed["runtime_status"] == "Failed", failed

    open_page(page, host)
    failure = card(page, "failed", "tas-broken")
    failure.wait_for()
    row = failure.locator("tr.finding").first
    assert row.locator(".file").inner_text() == f"{HOSTILE}.nc"  # as text, not as an image
    assert row.locator(".variable").inner_text() == "tas"
    rule = row.locator(".rule").inner_text()
    assert rule == failed["errors"][0]["code"] and "dtype" in rule
    found = row.locator(".message").inner_text()
    assert "'<f8'" in found and "Convert the odd file" in found  # what was found, the fix
    assert failure.locator(".error-code").inner_text() == "unsuitable_collection"
    assert "Fix or remove the files" in failure.locator(".remedy").inner_text()
    assert page.locator("#failed img").count() == 0
    assert page.evaluate("window.pwned") is None

    failure.get_by_role("button", name="Gate report").click()
    report = page.locator("#report-text")
    page.wait_for_function(
        "() => document.querySelector('#report-text').textContent.includes('Validation report')"
    )
    assert HOSTILE in report.inner_text() and "tas" in report.inner_text()
    page.locator("#report-close").click()
    failure.get_by_role("button", name="Run summary").click()
    page.wait_for_function(
        "() => document.querySelector('#report-text').textContent.includes('unsuitable')"
    )


@pytest.mark.slow
def test_approving_a_waiting_run_from_the_page_publishes_it(host: Host, page):
    instance_id = host.submit(host.source("approve"), "tas-approve", approval=True)
    waiting = host.wait(instance_id, lambda v: v.get("phase") == "awaiting_approval")

    open_page(page, host)
    run = card(page, "in-flight", "tas-approve")
    run.wait_for()
    assert run.locator(".phase").inner_text() == "awaiting_approval"
    run.get_by_role("button", name="Approve").click()
    dialog = page.locator("#confirm")
    assert dialog.is_visible() and "Publish build" in dialog.inner_text()
    # Cancelling does nothing: the run still waits.
    page.locator("#confirm-cancel").click()
    assert host.wait(instance_id, lambda v: True)["phase"] == "awaiting_approval"

    run.get_by_role("button", name="Approve").click()
    page.fill("#confirm-by", "operator-alice")
    page.fill("#confirm-reason", "gate report read")
    page.locator("#confirm-ok").click()
    page.wait_for_selector("#notice:has-text('Approved tas-approve')")
    done = host.finished(instance_id)
    assert done["phase"] == "succeeded" and done["approval"]["by"] == "operator-alice"

    page.locator("#refresh").click()
    dataset = card(page, "datasets", "tas-approve")
    dataset.locator(f".current-version:has-text('{waiting['run_id']}')").wait_for()
    assert "operator-alice: gate report read" in dataset.inner_text()
    preview = dataset.locator("img.thumb")
    page.wait_for_function(
        "() => { const i = document.querySelector(\"#datasets .card[data-dataset='tas-approve']"
        ' img.thumb"); return i && i.complete && i.naturalWidth > 0; }'
    )
    assert preview.get_attribute("src").startswith("blob:")


@pytest.mark.slow
def test_a_decision_from_the_page_gets_the_apis_checks_a_second_one_is_refused(host: Host, page):
    """The page decides through the API, so the API's rules hold: here the run was approved
    (by the command line, say) after the page was drawn; rejecting it from the stale page is
    refused with 409 naming the first decision, and the page says so."""
    instance_id = host.submit(host.source("twice"), "tas-twice", approval=True)
    host.wait(instance_id, lambda v: v.get("phase") == "awaiting_approval")
    open_page(page, host)
    page.locator("#auto").uncheck()  # the page stays as drawn: stale
    run = card(page, "in-flight", "tas-twice")
    approved = call(
        "POST", host.url(f"pipelines/{instance_id}/approve"), {"by": "cli-carol", "reason": "ok"}
    )
    assert approved.status == 202
    run.get_by_role("button", name="Reject").click()
    page.fill("#confirm-by", "operator-dave")
    page.fill("#confirm-reason", "wrong calendar")
    page.locator("#confirm-ok").click()
    notice = page.locator("#notice.bad")
    notice.wait_for()
    assert "refused: HTTP 409" in notice.inner_text()
    assert "approve by cli-carol" in notice.inner_text()
    assert host.finished(instance_id)["approval"]["by"] == "cli-carol"


@pytest.mark.slow
def test_unpublishing_from_the_page_makes_the_earlier_version_current(host: Host, page):
    source = host.source("unpublish")
    first = host.finished(host.submit(source, "tas-unpublish"))
    write_sample_files(source, SampleSpec(files=1, lat=4, lon=6, first_index=3))  # a 4th day
    second = host.finished(host.submit(source, "tas-unpublish"))
    assert first["run_id"] != second["run_id"] and second["phase"] == "succeeded"

    open_page(page, host)
    dataset = card(page, "datasets", "tas-unpublish")
    assert dataset.locator(".current-version").inner_text() == second["run_id"]
    row = dataset.locator(f"tr[data-version='{second['run_id']}']")
    row.get_by_role("button", name="Unpublish").click()
    assert "the current version" in page.locator("#confirm-text").inner_text()
    page.fill("#confirm-by", "operator-bob")
    page.locator("#confirm-ok").click()  # no reason: the page asks for one first
    assert "reason is required" in page.locator("#confirm-error").inner_text()
    page.fill("#confirm-reason", f"bad day {HOSTILE}")
    page.locator("#confirm-ok").click()
    page.wait_for_selector(f"#notice:has-text('current version now {first['run_id']}')")

    dataset = card(page, "datasets", "tas-unpublish")
    assert dataset.locator(".current-version").inner_text() == first["run_id"]
    second_row = dataset.locator(f"tr[data-version='{second['run_id']}']")
    assert "unpublished" in second_row.locator(".state").inner_text()
    assert "operator-bob at" in second_row.inner_text() and HOSTILE in second_row.inner_text()
    assert second_row.get_by_role("button", name="Unpublish").count() == 0
    assert page.evaluate("window.pwned") is None
    versions = call("GET", host.url("datasets/tas-unpublish")).json()
    assert versions["current"] == first["run_id"]


@pytest.mark.slow
def test_the_demo_prints_the_operator_page_and_the_page_shows_the_demos_run(tmp_path, capsys, page):
    """What `./dev demo` prints, followed: the local host started as printed, the page
    opened at the URL printed, the demo's run and dataset on it."""
    from devhost.cli import main

    assert main(["demo", "--out", str(tmp_path / "demo"), "--files", "3"]) == 0
    out = capsys.readouterr().out
    command = re.search(r"^operator page  python -m devhost start (.*)$", out, re.M)
    url = re.search(r"^  then open    (http://\S+/api/operator)", out, re.M)
    assert command and url, out[-2000:]
    given = dict(re.findall(r"--([a-z-]+) (\S+)", command.group(1)))
    run_id = re.search(r"run ([0-9a-f]{16}), instance pipeline-demo", out).group(1)
    settings = Settings(
        allow_local_paths=True,
        work_area=given["work-area"],
        store_root=given["store-root"],
        catalog=given["catalog"],
    )
    with (
        exported(settings, given["state"]),
        DurableHost(given["state"], workers=1) as durable,
        DevServer(durable) as server,  # any free port: 7071 may be taken on this machine
    ):
        assert url.group(1) == f"http://127.0.0.1:{given['port']}/api/operator"
        page.goto(url.group(1).replace(f"http://127.0.0.1:{given['port']}", server.base_url))
        page.wait_for_selector("#updated:has-text('updated')")
        finished = page.locator("#finished tr[data-instance='pipeline-demo']")
        assert finished.locator(".phase").inner_text() == "succeeded"
        assert run_id in finished.inner_text()
        demo = card(page, "datasets", "demo")
        assert demo.locator(".current-version").inner_text() == run_id


def test_runs_say_so_when_the_durable_api_gave_only_its_first_page(host: Host, monkeypatch):
    """The Durable API lists instances a page at a time and the Python SDK reads the first
    page only (devhost pages as the extension does), and a run's batch sub-orchestrations
    share its id's prefix: runs are asked for by dataset, so every run that got past its
    scan is shown whatever the page size, and a full page is said, never hidden."""
    import api.operator
    import devhost.frontend.durable_api

    monkeypatch.setattr(devhost.frontend.durable_api, "PAGE_SIZE", 2)
    monkeypatch.setattr(api.operator, "DURABLE_PAGE", 2)
    junk = host.root / "sources" / "junk"
    junk.mkdir(parents=True, exist_ok=True)
    (junk / "notes.nc").write_bytes(b"not a netcdf file")
    for n in range(3):  # runs that fail at the gate, quickly
        assert host.finished(host.submit(junk, f"paged-{n}"))["runtime_status"] == "Failed"
    listed = call("GET", host.url("runs")).json()
    assert listed["complete"] is False and "full page" in listed["note"]
    # still every run: they are asked for by dataset, not found by listing instances
    shown = {r["instance_id"] for r in listed["runs"]}
    assert {f"pipeline-paged-{n}" for n in range(3)} <= shown
    rpc = call("GET", f"{host.server.base_url}/durabletask/instances/?instanceIdPrefix=pipeline-")
    assert len(rpc.json()) == 2 and rpc.headers["x-ms-continuation-token"] == "2"
    monkeypatch.setattr(devhost.frontend.durable_api, "PAGE_SIZE", 100)
    monkeypatch.setattr(api.operator, "DURABLE_PAGE", 100)
    assert call("GET", host.url("runs")).json()["complete"] is True


def test_the_page_takes_the_apis_auth_and_allows_only_its_own_script(host: Host):
    answer = call("GET", host.url("operator"))
    assert answer.status == 200
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'$", policy.split(";")[1].strip())
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    body = answer.body.decode()
    assert "innerHTML" not in body and "insertAdjacentHTML" not in body and "eval(" not in body
