"""Local sources: what a local path may read (docs/security.md, docs/failure-modes.md).

Real folders, files and symbolic links in tmp_path; nothing is mocked. A link loop fails the
scan at once (never retried as a storage fault); system folders, folders outside the local
roots (PIPELINE_LOCAL_ROOTS) and folders inside or above the pipeline's own areas or the
local host's state are refused before anything is listed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from devhost.durable import index_app
from devhost.local import exported
from devhost.samples import write_bytes
from shared.model.errors import BadRequest, LocationNotAllowed, SourceUnreadable
from shared.model.locations import parse_location
from shared.model.request import PipelineRequest
from shared.model.settings import Settings, default_local_roots
from shared.stages.scan import scan


def request(source: str, patterns: tuple[str, ...] = ("*",)) -> PipelineRequest:
    return PipelineRequest.from_dict(
        {"source": source, "dataset_id": "local-src", "options": {"patterns": list(patterns)}}
    )


@pytest.fixture
def area(tmp_path: Path) -> Path:
    """tmp_path/pipeline holds the pipeline's own folders; tmp_path/data the NetCDF files."""
    write_bytes(tmp_path / "data" / "src" / "a.nc", b"netcdf")
    return tmp_path


@pytest.fixture
def settings(area: Path) -> Settings:
    return Settings(
        allow_local_paths=True,
        work_area=str(area / "pipeline" / "work"),
        store_root=str(area / "pipeline" / "stores"),
        catalog=str(area / "pipeline" / "catalog"),
        local_roots=(str(area / "data"),),
    )


def activity(name: str) -> Any:
    """The app's activity function as the worker calls it."""
    return index_app("function_app").activities[name]


# -- link loops: permanent, named, not retried ----------------------------------------------
def test_a_link_loop_as_the_source_is_refused_naming_it(area, settings):
    (area / "data" / "a").symlink_to(area / "data" / "b")
    (area / "data" / "b").symlink_to(area / "data" / "a")
    with pytest.raises(BadRequest, match="link loop") as refused:
        parse_location(str(area / "data" / "a"), settings, what="source")
    assert str(area / "data" / "a") in refused.value.message
    assert refused.value.retryable is False
    assert "ls -l" in refused.value.remedy


@pytest.mark.parametrize(
    ("link", "target", "says"),
    [
        ("back", "..", "a folder that holds it (a link loop)"),  # to an ancestor
        ("self.nc", "self.nc", "leads back to itself (a link loop)"),  # to itself
    ],
)
def test_a_link_loop_inside_the_source_fails_the_scan_at_once(area, settings, link, target, says):
    source = area / "data" / "src"
    (source / link).symlink_to(target)
    with pytest.raises(SourceUnreadable, match=r"\(a link loop\)") as failed:
        scan(request(str(source)), settings)
    assert failed.value.retryable is False
    assert failed.value.code == "source_unreadable"
    assert str(source / link) in failed.value.message and says in failed.value.message
    assert "Trying again" in failed.value.remedy


def test_the_scan_activity_answers_a_link_loop_at_once_instead_of_raising_for_a_retry(
    area, settings, monkeypatch
):
    """An activity raises only what the orchestrator should retry: a loop is answered."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    (area / "data" / "src" / "back").symlink_to("..")
    started = time.monotonic()
    answer = activity("scan_files")(
        {"request": request(str(area / "data" / "src")).to_dict(), "instance_id": "pipeline-x"}
    )
    assert time.monotonic() - started < 10
    assert answer["ok"] is False
    assert answer["error"]["code"] == "source_unreadable"
    assert answer["error"]["retryable"] is False


# -- system folders -------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["/", "/dev", "/proc/self", "file:///sys/kernel", "/dev/zero"])
def test_system_folders_are_never_a_local_source_whatever_the_roots(source, settings):
    anywhere = settings.with_changes(local_roots=("/",))
    with pytest.raises(LocationNotAllowed, match="/proc, /sys or /dev") as refused:
        parse_location(source, anywhere, what="source")
    assert repr(source) in refused.value.message


def test_a_link_to_a_system_folder_is_refused_as_what_it_leads_to(area, settings):
    (area / "data" / "devices").symlink_to("/dev")
    with pytest.raises(LocationNotAllowed, match="is /dev"):
        parse_location(str(area / "data" / "devices"), settings, what="source")


# -- the local roots --------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["file:///etc", "/etc/passwd", "{area}/elsewhere", "~"])
def test_a_source_outside_the_local_roots_is_refused_naming_it_and_the_roots(
    source, area, settings
):
    source = source.format(area=area)
    with pytest.raises(LocationNotAllowed, match="outside the folders local sources") as refused:
        parse_location(source, settings, what="source")
    assert repr(source) in refused.value.message
    assert str(area / "data") in refused.value.message
    assert "PIPELINE_LOCAL_ROOTS" in refused.value.remedy


def test_a_source_below_a_root_is_accepted_and_dot_dot_cannot_climb_out(area, settings):
    assert parse_location(str(area / "data" / "src"), settings, what="source").path == str(
        (area / "data" / "src").resolve()
    )
    with pytest.raises(LocationNotAllowed, match="outside the folders"):
        parse_location(str(area / "data" / ".." / "pipeline"), settings, what="source")


def test_a_link_in_the_source_may_not_lead_out_of_the_roots(area, settings):
    write_bytes(area / "private" / "key.nc", b"secret")
    (area / "data" / "src" / "key.nc").symlink_to(area / "private" / "key.nc")
    with pytest.raises(LocationNotAllowed, match=r"leads \(a symbolic link\) to") as refused:
        scan(request(str(area / "data" / "src")), settings)
    assert str(area / "data" / "src" / "key.nc") in refused.value.message
    assert str(area / "private" / "key.nc") in refused.value.message
    assert "outside the folders local sources may be read from" in refused.value.message


def test_settings_built_in_code_without_roots_read_any_folder(area):
    """The library API (tests, benchmarks, the command line): the code names its folders."""
    anywhere = Settings(allow_local_paths=True, work_area=str(area / "pipeline" / "work"))
    write_bytes(area / "elsewhere" / "b.nc", b"netcdf")
    assert scan(request(str(area / "elsewhere")), anywhere).file_count == 1


# -- the pipeline's own areas and the local host's state --------------------------------------
@pytest.mark.parametrize(
    ("source", "area_name"),
    [
        ("pipeline", "work area"),  # above all three
        ("pipeline/work", "work area"),  # equal
        ("pipeline/stores/ds", "store root"),  # inside
        ("pipeline/catalog", "catalog"),
    ],
)
def test_a_local_source_overlapping_the_pipelines_own_areas_is_refused(
    source, area_name, area, settings
):
    anywhere = settings.with_changes(local_roots=(str(area),))
    (area / source).mkdir(parents=True)
    with pytest.raises(LocationNotAllowed, match=f"overlaps the pipeline's own {area_name}"):
        parse_location(str(area / source), anywhere, what="source")


def test_a_link_in_the_source_may_not_lead_into_the_work_area(area, settings):
    write_bytes(area / "pipeline" / "work" / "manifest.json", b"{}")
    (area / "data" / "src" / "work").symlink_to(area / "pipeline" / "work")
    anywhere = settings.with_changes(local_roots=(str(area),))
    with pytest.raises(LocationNotAllowed, match="overlaps the pipeline's own work area"):
        scan(request(str(area / "data" / "src")), anywhere)


def test_a_source_above_the_local_host_state_never_reads_durable_sqlite(area, settings):
    """devhost keeps its Durable history in --state; a source above it with patterns ["*"]
    would list durable.sqlite. The host names its state folder while it runs."""
    state = area / "data" / "state"
    write_bytes(state / "durable.sqlite", b"SQLite format 3\0")
    with exported(settings, state):
        with pytest.raises(LocationNotAllowed, match="local host state") as refused:
            scan(request(str(area / "data")), settings)
        assert str(state) in refused.value.message
        with pytest.raises(LocationNotAllowed, match="local host state"):
            parse_location(f"file://{state}", settings, what="source")
        assert scan(request(str(area / "data" / "src")), settings).file_count == 1
    assert not list((area / "pipeline" / "work").rglob("*durable*"))


def test_the_default_host_state_in_the_current_folder_is_always_refused(
    area, settings, monkeypatch
):
    monkeypatch.chdir(area / "data")
    write_bytes(area / "data" / ".devhost" / "durable.sqlite", b"SQLite format 3\0")
    with pytest.raises(LocationNotAllowed, match=r"local host state \(.*\.devhost\)"):
        parse_location(".", settings, what="source")


# -- the setting ------------------------------------------------------------------------------
def test_local_roots_default_to_the_current_folder_and_the_work_areas_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cwd = os.getcwd()
    allowed = {"PIPELINE_ALLOW_LOCAL_PATHS": "true"}
    assert Settings.from_env(allowed).local_roots == (cwd,)  # .pipeline/work: below it
    outside = {**allowed, "PIPELINE_WORK_AREA": "/srv/pipeline/work"}
    assert Settings.from_env(outside).local_roots == (cwd, "/srv/pipeline")
    assert Settings.from_env({**allowed, "PIPELINE_WORK_AREA": "/work"}).local_roots == (cwd,)
    assert Settings.from_env({**allowed, "PIPELINE_WORK_AREA": "az://w"}).local_roots == (cwd,)
    assert Settings.from_env({}).local_roots == ()  # local paths off: no roots needed
    assert default_local_roots("/srv/pipeline/work") == (cwd, "/srv/pipeline")


def test_local_roots_are_read_as_absolute_folders_and_star_means_any(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"PIPELINE_ALLOW_LOCAL_PATHS": "true", "PIPELINE_LOCAL_ROOTS": " /data/nc , rel ,"}
    assert Settings.from_env(env).local_roots == ("/data/nc", str(tmp_path / "rel"))
    assert Settings.from_env({**env, "PIPELINE_LOCAL_ROOTS": "*"}).local_roots == ()
    with pytest.raises(BadRequest, match="PIPELINE_LOCAL_ROOTS"):
        Settings.from_env({**env, "PIPELINE_LOCAL_ROOTS": "*,/data"})


@pytest.mark.parametrize(
    "settings",
    [
        Settings(allow_local_paths=True, local_roots=("/data/nc", "/srv/more")),
        Settings(allow_local_paths=True),  # any folder: "*" for the worker processes
        Settings(),
    ],
)
def test_local_roots_survive_the_trip_to_the_worker_processes(settings):
    assert Settings.from_env(settings.to_env()) == settings


def test_the_deployed_default_refuses_the_rest_of_the_disk(tmp_path, monkeypatch):
    """An app that reads its settings from the environment, local paths on, no roots set."""
    write_bytes(tmp_path / "app" / "data" / "a.nc", b"netcdf")
    monkeypatch.chdir(tmp_path / "app")
    deployed = Settings.from_env({"PIPELINE_ALLOW_LOCAL_PATHS": "true"})
    assert parse_location("data", deployed, what="source").path == str(tmp_path / "app" / "data")
    with pytest.raises(LocationNotAllowed, match="outside the folders local sources"):
        parse_location("file:///etc", deployed, what="source")


def test_a_pipe_as_the_source_is_unreadable_not_missing(area, settings):
    os.mkfifo(area / "data" / "pipe.nc")
    with pytest.raises(SourceUnreadable, match="neither a file nor a folder") as failed:
        scan(request(str(area / "data" / "pipe.nc")), settings)
    assert failed.value.retryable is False
