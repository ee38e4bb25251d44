"""Verify in full mode reads the store's values for a group of files at once (compare.
GROUPED_READ_BYTES): what it finds must be what reading every file alone finds, naming the
same file, variable and chunk, whatever the group's size and however the files' steps lie in
the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devhost.samples import SampleSpec, write_sample_files
from shared.io.stores import open_store
from shared.model.errors import CorruptChunk
from shared.model.locations import parse_location
from shared.model.settings import Settings
from shared.model.wire import VerifyTally
from shared.stages.verify import compare, compare_files
from tests.test_corrupt_sources import combined_store, damage_chunk, replace_keeping_size_and_mtime
from tests.test_verify import build, edit_refs

SIX = SampleSpec(files=6, lat=4, lon=6)
SIX_LARGER = SampleSpec(files=6, lat=18, lon=36)  # chunks large enough to damage in place


def outcome(tally: VerifyTally) -> tuple[Any, ...]:
    """Everything a tally says but the time it took."""
    return (
        tally.claims,
        tally.mismatches,
        tally.files_checked,
        tally.variables_checked,
        tally.values_compared,
        tally.steps,
    )


def grouped_reads(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, list[slice]]]:
    """What every grouped read of the store read: per variable, the runs of steps (an empty
    dict for a group read one file at a time, or whose read failed)."""
    seen: list[dict[str, list[slice]]] = []
    real = compare._read_together

    def recording(group: list[compare._Opened], *args: Any, **kwargs: Any) -> compare._GroupRead:
        read = real(group, *args, **kwargs)
        seen.append({name: [run for run, _ in runs] for name, runs in read.items()})
        return read

    monkeypatch.setattr(compare, "_read_together", recording)
    return seen


def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file compared alone, as before the grouped reads."""
    monkeypatch.setattr(compare, "GROUPED_FILES", 1)


# -- (1) what does not decode, or differs, is named for its own file, not a neighbour --------
def test_a_chunk_damaged_in_one_file_of_a_group_names_that_file_variable_and_chunk(
    tmp_path: Path, local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store points at the damaged bytes too: the group's read fails, and the failure is
    the source file's, as when the files are compared one by one."""
    paths = write_sample_files(tmp_path / "src", SIX_LARGER)
    manifest_url, store_url = combined_store(
        tmp_path / "src",
        local_settings,
        "kerchunk-json",
        before_combine=lambda: damage_chunk(paths[3]),
    )
    reads = grouped_reads(monkeypatch)
    with pytest.raises(CorruptChunk) as corrupt:
        compare_files(manifest_url, store_url, "kerchunk-json", "time", local_settings)
    error = corrupt.value
    assert f"{paths[3].name}: variable 'tas', chunk (0, 0, 0)" in error.message
    assert error.context["url"].endswith(paths[3].name)
    assert error.context["side"] == "source file"
    assert reads == [{}]  # one group of six, whose read failed


def test_a_file_replaced_keeping_its_etag_in_a_group_is_named_as_what_the_store_points_at(
    tmp_path: Path, local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file reads fine but no longer holds the bytes the store points at: CorruptChunk on
    the store's side naming that file as the one compared (its own bytes are not there)."""
    paths = write_sample_files(tmp_path / "src", SIX_LARGER)
    manifest_url, store_url = combined_store(
        tmp_path / "src",
        local_settings,
        "kerchunk-json",
        before_combine=lambda: replace_keeping_size_and_mtime(paths[2], tmp_path / "other"),
    )
    reads = grouped_reads(monkeypatch)
    with pytest.raises(CorruptChunk) as corrupt:
        compare_files(manifest_url, store_url, "kerchunk-json", "time", local_settings)
    error = corrupt.value
    assert error.context["side"] == "store" and error.context["url"].endswith(paths[2].name)
    assert f"{paths[2].name} itself reads" in error.message
    assert '"full": true' in error.remedy
    assert reads == [{}]  # one group of six, whose read failed


def test_values_changed_in_the_store_for_one_file_of_a_group_name_that_file_and_variable(
    tmp_path: Path, local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sample_files(tmp_path / "src", SIX)
    manifest_url, store_url = build(tmp_path / "src", local_settings)
    # the third file's tas now points at the first file's bytes
    edit_refs(store_url, lambda refs: refs["refs"].update({"tas/2.0.0": refs["refs"]["tas/0.0.0"]}))
    reads = grouped_reads(monkeypatch)
    grouped = compare_files(manifest_url, store_url, "kerchunk-json", "time", local_settings)
    assert [(Path(m["url"]).name, m["variable"]) for m in grouped.mismatches] == [
        ("tas_day_20240103.nc", "tas")
    ]
    assert "values differ; first at index (0, 0, 0)" in grouped.mismatches[0]["what"]
    assert reads[0]["tas"] == [slice(0, 6)]  # read together
    alone(monkeypatch)
    one_by_one = compare_files(manifest_url, store_url, "kerchunk-json", "time", local_settings)
    assert outcome(grouped) == outcome(one_by_one)


# -- (2) a group is bounded by the byte budget ------------------------------------------------
def test_files_past_the_byte_budget_go_to_the_next_group_and_compare_the_same(
    tmp_path: Path, local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file's cost is its size and its steps' values in the store. A budget of two files'
    cost and a third file's size, but not its values, makes groups of two (the third is
    counted once open); a budget of one byte, groups of one: either way the tally is the one
    of a large budget."""
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=5, lat=18, lon=36))
    manifest_url, store_url = build(tmp_path / "src", local_settings)
    edit_refs(store_url, lambda refs: refs["refs"].update({"pr/3.0.0": refs["refs"]["pr/1.0.0"]}))

    def compared(budget: int) -> tuple[VerifyTally, list[dict[str, list[slice]]]]:
        with monkeypatch.context() as patched:
            patched.setattr(compare, "GROUPED_READ_BYTES", budget)
            reads = grouped_reads(patched)
            tally = compare_files(manifest_url, store_url, "kerchunk-json", "time", local_settings)
        return tally, reads

    store = parse_location(store_url, local_settings)
    with open_store(store, "kerchunk-json", parse_location(str(tmp_path / "src"), local_settings),
                    local_settings) as opened:  # fmt: skip
        step = compare._step_bytes(opened, "time", set())
    sizes = [p.stat().st_size for p in paths]
    assert max(sizes) - min(sizes) < step // 8  # the files' costs alike
    large, large_reads = compared(1 << 30)
    assert [r["tas"] for r in large_reads] == [[slice(0, 5)]]
    assert [Path(m["url"]).name for m in large.mismatches] == ["tas_day_20240104.nc"]
    pairs, pair_reads = compared(3 * max(sizes) + 2 * step + step // 2)
    assert len(pair_reads) == 3 and pair_reads[2] == {}  # the fifth file alone
    assert [r["tas"] for r in pair_reads[:2]] == [[slice(0, 2)], [slice(2, 4)]]
    single, single_reads = compared(1)
    assert single_reads == [{}] * 5
    assert outcome(pairs) == outcome(single) == outcome(large)


# -- (3) files whose steps are not consecutive in the store -----------------------------------
def test_files_whose_steps_are_apart_in_the_store_compare_with_their_own_steps(
    tmp_path: Path, local_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """File names out of date order: the manifest (by name) holds the dates 1-2, 5-6, 3-4,
    7-8, so the batch of its first two files holds the store's steps 0:2 and 4:6, read as two
    runs; each file is compared with its own steps, and a change in the store is named for
    the file whose steps changed."""
    spec = SampleSpec(files=4, steps_per_file=2, lat=4, lon=6)
    paths = write_sample_files(tmp_path / "dated", spec)
    (tmp_path / "src").mkdir()
    for name, path in zip("acbd", paths, strict=True):
        path.rename(tmp_path / "src" / f"{name}.nc")
    manifest_url, store_url = build(tmp_path / "src", local_settings)

    def batches() -> list[VerifyTally]:
        return [
            compare_files(
                manifest_url, store_url, "kerchunk-json", "time", local_settings, start=a, stop=b
            )
            for a, b in [(0, 2), (2, 4)]
        ]

    reads = grouped_reads(monkeypatch)
    correct = batches()
    assert [r["tas"] for r in reads] == [[slice(0, 2), slice(4, 6)], [slice(2, 4), slice(6, 8)]]
    assert [t.mismatches for t in correct] == [[], []]
    assert [t.claims for t in correct] == [
        [[0, 2, 0, 0], [4, 6, 1, 1]],
        [[2, 4, 2, 2], [6, 8, 3, 3]],
    ]

    # the store's step 5 (b.nc's second date) now holds step 3's values (c.nc's second)
    edit_refs(store_url, lambda refs: refs["refs"].update({"tas/5.0.0": refs["refs"]["tas/3.0.0"]}))
    changed = batches()
    assert [
        [(m["url"].rsplit("/", 1)[1], m["variable"]) for m in t.mismatches] for t in changed
    ] == [
        [("b.nc", "tas")],
        [],
    ]
    assert "first at index (1, 0, 0)" in changed[0].mismatches[0]["what"]
    alone(monkeypatch)
    assert [outcome(t) for t in batches()] == [outcome(t) for t in changed]


# -- variables without the concat dimension: the store's read once, compared with every file --
def test_a_variable_without_the_concat_dimension_changed_in_the_store_is_named_for_each_file(
    tmp_path: Path, local_settings: Settings
) -> None:
    """The store's value of such a variable is read for the first file that compares it and
    kept for the others (compare_files): every file is still compared with the store's."""
    paths = write_sample_files(tmp_path / "src", SampleSpec(files=4, lat=4, lon=6))
    manifest_url, store_url = build(tmp_path / "src", local_settings)
    edit_refs(store_url, lambda refs: refs["refs"].update({"crs/0": "base64:BwAAAA=="}))  # 7
    tally = compare_files(manifest_url, store_url, "kerchunk-json", "time", local_settings)
    assert [(Path(m["url"]).name, m["variable"]) for m in tally.mismatches] == [
        (path.name, "crs") for path in paths
    ]
    assert all("7 in the store" in m["what"] for m in tally.mismatches)
