"""A memory ceiling for the stages whose memory grows with the number of files (combine,
verify): they check their own resident memory as they go and stop with a clear error before
the operating system kills the worker (a killed worker loses the activity's work and, on the
Consumption/Premium plans, takes the other activities on that instance with it)."""

from __future__ import annotations

import psutil

from shared.model.errors import PipelineError


class MemoryLimitExceeded(PipelineError):
    code = "memory_limit"
    default_remedy = (
        "Split the collection into several datasets (narrower prefixes), use the "
        "kerchunk-parquet or icechunk format, or run on a plan with more memory and raise "
        "PIPELINE_MEMORY_LIMIT_BYTES."
    )


class MemoryWatch:
    """Checks the process's resident memory against a limit; remembers the peak it saw."""

    def __init__(self, limit_bytes: int, stage: str) -> None:
        self.limit = limit_bytes
        self.stage = stage
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss

    def check(self, where: str) -> int:
        rss = self.process.memory_info().rss
        self.peak = max(self.peak, rss)
        if rss > self.limit:
            raise MemoryLimitExceeded(
                f"{self.stage} stopped {where}: the worker uses {rss / 1e9:.2f} GB of memory, "
                f"above the limit of {self.limit / 1e9:.2f} GB (PIPELINE_MEMORY_LIMIT_BYTES); "
                "going on would risk the worker being killed.",
                stage=self.stage,
                rss_bytes=rss,
                limit_bytes=self.limit,
            )
        return rss
