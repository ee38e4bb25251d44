"""Record the orchestrations a release leaves in flight, for the replay test of the next one.

    .venv/bin/python -m tools.record_histories --ref <the release deployed now>

takes the app at ``--ref`` out of git (``git archive``: that release's orchestrators, wire,
activities and devhost, not today's), runs it on devhost with this venv, and stops it while
instances are in flight the way they are when a deploy happens:

- ``pipeline-approval``: a run with ``options.approval`` waiting for its decision (the
  approval wait lasts up to PIPELINE_APPROVAL_TIMEOUT_SECONDS, 7 days);
- ``watch-watched``: a dataset's upload watcher (it runs for ever), after one upload event
  made it run the pipeline once and go back to waiting for uploads.

Then it writes, into ``tests/fixtures/histories/<version>/`` (``<version>`` is that release's
host.json defaultVersion, ``legacy`` before it had one): ``instances.json`` (each instance's
row, history, waiting messages and retry bookkeeping: devhost.durable.snapshot) and ``data/``
(the source files, work area, stores and catalog that release wrote, with their modification
times in ``files.json``, as the next release will find them). Paths are written as ``@ROOT@``.
tests/test_versioning.py replays every recorded set with today's code.

When to run it (docs/versioning.md): after a release is deployed, with ``--ref`` at that
release, before changing any orchestrator; keep the sets of every version still in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from devhost.durable.snapshot import dump

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "histories"
PLACEHOLDER = "@ROOT@"
INSTANCES = ("pipeline-approval", "watch-watched")

# Runs inside the archived release (its own modules), with the data root as argv[1]. It
# only uses what every release since devhost's Event Grid endpoint has.
DRIVER = r"""
import json, sys, time
from pathlib import Path

from devhost.durable import DurableHost
from devhost.events import blob_created_events, post_events
from devhost.samples import SampleSpec, write_sample_files
from devhost.server import DevServer
from shared.io.storage import Storage
from shared.model.plan import PipelineInput, RunPolicy
from shared.model.request import PipelineRequest
from shared.model.settings import Settings

import shared
assert Path(shared.__file__).resolve().is_relative_to(Path.cwd().resolve()), shared.__file__

root = Path(sys.argv[1])
data = root / "data"
spec = SampleSpec(files=2, lat=4, lon=6)
write_sample_files(data / "source" / "approval", spec)
write_sample_files(data / "source" / "watched", spec)
settings = Settings.from_env()


def wait(host, instance_id, done, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = host.get_status(instance_id)
        if status and status["runtimeStatus"] in ("Failed", "Terminated"):
            raise SystemExit(f"{instance_id} ended {status['runtimeStatus']}: {status['output']}")
        if status and done(status):
            return status
        time.sleep(0.2)
    raise SystemExit(f"{instance_id}: {what} did not happen in {timeout} s: {status}")


with DurableHost(root / "state", workers=2) as host, DevServer(host) as server:
    request = PipelineRequest.from_dict(
        {"source": str(data / "source" / "approval"), "dataset_id": "approval",
         "options": {"approval": True}}
    )
    run = PipelineInput(request, RunPolicy.from_request(request, settings))
    host.start_new("pipeline", "pipeline-approval", json.dumps(run.to_dict()))
    wait(host, "pipeline-approval",
         lambda s: (s["customStatus"] or {}).get("phase") == "awaiting_approval",
         "the wait for approval")
    events = blob_created_events(str(data / "source" / "watched"), settings, Storage(settings))
    post_events(server.base_url, events[:1])
    wait(host, "watch-watched",
         lambda s: (s["customStatus"] or {}).get("phase") == "idle"
         and (s["customStatus"] or {}).get("runs") == 1,
         "the watcher's first run")
"""


def recording_env(root: Path) -> dict[str, str]:
    """The pipeline's settings for the recorded data under ``root`` (the replay test uses
    the same ones with its own root)."""
    data = root / "data"
    return {
        "PIPELINE_WORK_AREA": str(data / "work"),
        "PIPELINE_STORE_ROOT": str(data / "stores"),
        "PIPELINE_CATALOG": str(data / "catalog"),
        "PIPELINE_ALLOW_LOCAL_PATHS": "true",
        "PIPELINE_LOCAL_ROOTS": str(data),
        "PIPELINE_APPROVAL_TIMEOUT_SECONDS": "600",
        "PIPELINE_STAC_LICENSE": "CC-BY-4.0",
        "PIPELINE_DATASETS": json.dumps(
            {
                "datasets": {
                    "watched": {
                        "source": str(data / "source" / "watched"),
                        "quiet_seconds": 1,
                        "max_wait_seconds": 5,
                    }
                }
            }
        ),
    }


def local_etag(path: Path) -> str:
    """A local file's ETag as the pipeline reads it (obstore's LocalStore: inode,
    modification time and size)."""
    import obstore
    from obstore.store import LocalStore

    from shared.io.storage import normalise_etag

    return normalise_etag(obstore.head(LocalStore(), str(path.resolve()))["e_tag"])


def install(fixture: Path, root: Path) -> list[dict[str, object]]:
    """A recorded set put back under ``root``: its data files (paths and modification
    times as recorded) and its instances' snapshots, ready for devhost.durable.snapshot.load.
    A local file's ETag names its inode, which a copy cannot keep: the recorded ETags in
    the pipeline's documents and the histories become the copies' own (on Azure a blob
    keeps its ETag; here the same file gets a new one only by being copied)."""
    files: dict[str, dict[str, int | str]] = json.loads((fixture / "files.json").read_text())
    renamed: dict[str, str] = {}
    for relative, meta in files.items():
        target = root / "data" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((fixture / "data" / relative).read_bytes())
        os.utime(target, ns=(int(meta["mtime_ns"]), int(meta["mtime_ns"])))
        renamed[str(meta["etag"])] = local_etag(target)

    def restored(text: str) -> str:
        text = text.replace(PLACEHOLDER, str(root))
        for old, new in renamed.items():
            text = text.replace(old, new)
        return text

    for relative in files:
        target = root / "data" / relative
        raw = target.read_bytes()
        if PLACEHOLDER.encode() in raw or any(e.encode() in raw for e in renamed):
            mtime = target.stat().st_mtime_ns
            target.write_text(restored(raw.decode()))
            os.utime(target, ns=(mtime, mtime))
    text = restored((fixture / "instances.json").read_text())
    snapshots: list[dict[str, object]] = json.loads(text)["instances"]
    return snapshots


def release_version(app: Path) -> str:
    host = json.loads((app / "host.json").read_text())
    version = host.get("extensions", {}).get("durableTask", {}).get("defaultVersion")
    return str(version) if version else "legacy"


def record(ref: str, out: Path | None = None) -> Path:
    with tempfile.TemporaryDirectory(prefix="record-histories-") as temp:
        work = Path(temp)
        app = work / "app"
        app.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", ref],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(app)], input=archive, check=True)
        data = work / "data"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
            **recording_env(work),
            "PYTHONPATH": str(app),
            "DEVHOST_WORKER_DIR": str(ROOT / ".worker"),
        }
        subprocess.run([sys.executable, "-c", DRIVER, str(work)], cwd=app, env=env, check=True)
        target = out or FIXTURES / release_version(app)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        snapshots = dump(work / "state" / "durable.sqlite", list(INSTANCES))
        text = json.dumps(
            {"ref": ref, "commit": _commit(ref), "instances": snapshots}, indent=1, sort_keys=True
        )
        (target / "instances.json").write_text(text.replace(str(work), PLACEHOLDER) + "\n")
        files: dict[str, dict[str, object]] = {}
        for path in sorted(p for p in data.rglob("*") if p.is_file()):
            relative = path.relative_to(data).as_posix()
            copy = target / "data" / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            raw = path.read_bytes()
            if str(work).encode() in raw:  # a path inside the pipeline's own documents
                copy.write_bytes(raw.replace(str(work).encode(), PLACEHOLDER.encode()))
            else:
                shutil.copyfile(path, copy)
            files[relative] = {"mtime_ns": path.stat().st_mtime_ns, "etag": local_etag(path)}
        (target / "files.json").write_text(json.dumps(files, indent=1, sort_keys=True) + "\n")
        return target


def _commit(ref: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", ref], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the git ref of the release in flight")
    parser.add_argument("--out", type=Path, help="default: tests/fixtures/histories/<version>")
    args = parser.parse_args(argv)
    print(record(args.ref, args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
