"""Runs one measurement in a fresh process: ``python -m bench._child module:function JSON``.
Prints the function's JSON answer with the process's peak resident memory."""

from __future__ import annotations

import importlib
import json
import resource
import sys

from bench.common import MARK


def peak_rss() -> int:
    """This process's peak resident memory: VmHWM, which exec resets (ru_maxrss keeps the
    parent's high-water mark across fork and exec, so it over-reports small children)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    target, payload = sys.argv[1], json.loads(sys.argv[2])
    module, function = target.split(":")
    answer = getattr(importlib.import_module(module), function)(**payload)
    answer["peak_rss_bytes"] = peak_rss()
    print(MARK + json.dumps(answer, default=int), flush=True)


if __name__ == "__main__":
    main()
