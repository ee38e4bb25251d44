"""The command line an operator uses: exit codes, and errors without tracebacks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devhost.cli import main
from devhost.samples import SampleSpec, truncate_copy, write_bytes, write_sample_files

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    for name in ("PIPELINE_STORAGE_CONNECTION_STRING", "PIPELINE_STORAGE_ACCOUNT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIPELINE_WORK_AREA", str(tmp_path / "work"))
    monkeypatch.setenv("PIPELINE_STORE_ROOT", str(tmp_path / "stores"))
    monkeypatch.setenv("PIPELINE_CATALOG", str(tmp_path / "catalog"))


@pytest.mark.slow
def test_run_prints_where_every_output_is(tmp_path, capsys):
    write_sample_files(tmp_path / "src", SampleSpec(files=3, lat=6, lon=10))
    assert (
        main(["run", str(tmp_path / "src"), "--dataset", "tas", "--state", str(tmp_path / "state")])
        == 0
    )
    out = capsys.readouterr().out
    for label in (
        "files        3",
        "bytes read",
        "store        file://",
        "STAC item    file://",
        "run report",
    ):
        assert label in out


@pytest.mark.slow
def test_run_on_an_empty_folder_exits_1_with_the_error_and_what_to_do(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert (
        main(
            ["run", str(tmp_path / "empty"), "--dataset", "tas", "--state", str(tmp_path / "state")]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "error [empty_source]: There are no files under" in err
    assert "what to do:" in err
    assert "Traceback" not in err


def test_run_with_a_bad_dataset_id_names_the_option_before_starting_anything(tmp_path, capsys):
    state = tmp_path / "state"
    assert main(["run", str(tmp_path), "--dataset", "Not Valid", "--state", str(state)]) == 1
    err = capsys.readouterr().err
    assert "--dataset is 'Not Valid'" in err and "run the command again" in err
    assert "dataset_id" not in err and "the request" not in err  # the command line's words
    assert not state.exists()  # refused before any host started


@pytest.mark.slow
def test_a_run_stopped_by_the_gate_says_where_its_run_report_is(tmp_path, capsys):
    write_sample_files(tmp_path / "src", SampleSpec(files=2, lat=6, lon=10))
    write_bytes(tmp_path / "src" / "zero.nc", b"")
    assert (
        main(["run", str(tmp_path / "src"), "--dataset", "tas", "--state", str(tmp_path / "state")])
        == 1
    )
    err = capsys.readouterr().err
    assert "error [unsuitable_collection]: 1 of 3 files cannot be combined" in err
    assert "gate report: file://" in err
    assert "zero.nc is empty" in err
    assert "run report: file://" in err


def test_validate_reports_each_file_and_exits_1_when_one_is_unsuitable(tmp_path, capsys):
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=1, lat=6, lon=10))
    truncate_copy(paths[0], tmp_path / "src" / "cut.nc", 0.5)
    write_bytes(tmp_path / "src" / "empty.nc", b"")
    assert main(["validate", str(tmp_path / "src")]) == 1
    out = capsys.readouterr().out
    assert "cut.nc" in out and "truncated" in out
    assert "empty.nc" in out and "empty_file" in out
    assert "3 file(s) checked, 2 unsuitable" in out
    assert "Traceback" not in out


def test_validate_of_good_files_exits_0(tmp_path, capsys):
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=2, lat=6, lon=10))
    assert main(["validate", *map(str, paths)]) == 0
    assert "2 file(s) checked, 0 unsuitable" in capsys.readouterr().out


def test_validate_of_a_missing_path_says_so(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.nc")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_proves_the_published_store_equals_the_sources(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--files", "3"]) == 0
    out = capsys.readouterr().out
    assert "PROOF (kerchunk-json)" in out and "identical to xarray.open_mfdataset" in out


def test_demo_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path, capsys):
    write_bytes(tmp_path / "mine" / "precious.txt", b"keep me")
    assert main(["demo", "--out", str(tmp_path / "mine"), "--files", "2"]) == 1
    assert (tmp_path / "mine" / "precious.txt").exists()
    assert "refusing to overwrite" in capsys.readouterr().err


def test_the_module_runs_as_a_program():
    result = subprocess.run(
        [sys.executable, "-m", "devhost", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "demo" in result.stdout and "validate" in result.stdout


def test_the_devhost_command_runs_from_any_folder(tmp_path):
    """./dev setup installs this repository editable into .venv: its `devhost` command runs
    outside the repository, with nothing on PYTHONPATH."""
    command = Path(sys.executable).parent / "devhost"
    assert command.exists(), "run ./dev setup: it installs the devhost command"
    write_sample_files(tmp_path / "data", SampleSpec(files=2, lat=4, lon=6))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [str(command), "validate", "data"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("SUITABLE") == 2


def test_validate_of_several_files_applies_the_checks_across_files(tmp_path, capsys):
    from tests.matrix_cases import other_grid

    other_grid(tmp_path / "src")
    assert main(["validate", str(tmp_path / "src")]) == 1
    out = capsys.readouterr().out
    assert "ACROSS THE FILES" in out
    assert "coordinates_differ: lat: the coordinate values in tas_day_20240109.nc differ" in out
    assert "3 file(s) checked, 0 unsuitable or unreadable, 1 problem(s) across the files." in out


@pytest.mark.slow
def test_validate_and_run_read_the_group_they_are_given(tmp_path, capsys):
    """Data in a group: without --group the files are refused naming the group; with it,
    they validate, and `run --group` publishes that group."""
    from tests.matrix_cases import data_in_a_group_with_coordinates

    data_in_a_group_with_coordinates(tmp_path / "src")
    assert main(["validate", str(tmp_path / "src")]) == 1
    assert "/PRODUCT (time, x, no2)" in capsys.readouterr().out
    assert main(["validate", str(tmp_path / "src"), "--group", "PRODUCT"]) == 0
    capsys.readouterr()
    state = str(tmp_path / "state")
    command = ["run", str(tmp_path / "src"), "--dataset", "s5p", "--group", "/PRODUCT"]
    assert main([*command, "--state", state]) == 0
    assert "STAC item    file://" in capsys.readouterr().out


@pytest.mark.slow
def test_a_mistyped_source_shows_the_failed_stage_and_the_error_once(tmp_path, capsys):
    """No raw ERROR log lines before the display, no "scan done" for a stage that failed."""
    state = str(tmp_path / "state")
    assert main(["run", str(tmp_path / "nope"), "--dataset", "tas", "--state", state]) == 1
    err = capsys.readouterr().err
    assert "scan      FAILED after" in err
    assert "scan      done" not in err
    assert "ERROR" not in err
    assert err.count("does not exist") == 1


@pytest.mark.slow
def test_a_concat_dim_the_files_do_not_have_is_said_first_with_the_right_one(tmp_path, capsys):
    write_sample_files(tmp_path / "src", SampleSpec(files=3, lat=6, lon=10))
    state = str(tmp_path / "state")
    command = ["run", str(tmp_path / "src"), "--dataset", "tas", "--concat-dim", "date"]
    assert main([*command, "--state", state]) == 1
    err = capsys.readouterr().err
    assert "None of the 3 files has a coordinate 'date'" in err
    assert "--concat-dim time" in err
    assert "Regrid" not in err


@pytest.mark.slow
def test_tiles_on_a_busy_port_says_so_before_printing_anything_else(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "devhost", "tiles", "--port", str(port),
             "--store-root", str(tmp_path), "--catalog", str(tmp_path)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Press Ctrl+C" not in done.stdout and "map of" not in done.stdout
    assert "Errno" not in done.stderr.replace("[Errno", "")


def test_a_command_run_in_process_leaves_logging_as_it_found_it(tmp_path, capsys, monkeypatch):
    """run and demo hide stage-failure records while they run (they print the error
    themselves); afterwards the process's handlers and environment are as before, so the
    records reach whatever logs them next (a test's caplog, a notebook)."""
    import logging

    from devhost.progress import QUIET_ENV, StageFailures

    monkeypatch.delenv(QUIET_ENV, raising=False)
    root = logging.getLogger()
    assert main(["run", str(tmp_path), "--dataset", "Bad Id!"]) == 1
    assert QUIET_ENV not in os.environ
    assert not any(isinstance(f, StageFailures) for h in root.handlers for f in h.filters)
