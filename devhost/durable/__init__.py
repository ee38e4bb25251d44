"""A local stand-in for the Durable Functions extension: it drives the real
azure-functions-durable SDK with the host's replay protocol (docs/devhost.md).

For every orchestration step ("episode") it builds the history JSON the extension would
build, calls the registered orchestrator's handle, reads the actions it returns, and
appends the scheduling events with the sequence numbers the extension would give them.
Activities run in a process pool (HDF5 parsing holds a lock inside one process) through the
worker's own ActivityTriggerConverter. Retries, timers (long timers included),
sub-orchestrations, external events and continue-as-new follow the extension's event layout
and the Azure Storage backend's rules: every execution has its own id, and what was sent to
an earlier execution (a completion, a fired timer) is discarded.

Everything is kept in SQLite under the state folder, and every episode and every activity
completion is one transaction: a killed host restarts where it stopped, and an activity
whose completion was recorded is never run again (one whose completion was not is run
again: activities are at-least-once, as in Azure).

The modules, each importing only those above it here:

- protocol: the wire of the extension and the SDK (event and action types, limits);
- workers: the app's index and the activity workers;
- store: the SQLite state, its schema and its tables' reads and writes;
- instances: an instance's executions (start, continue-as-new, end);
- replay: one episode (history, orchestrator call, scheduling, batches);
- host: DurableHost (lifecycle, dispatcher, client API).
"""

from devhost.durable.host import DurableHost, InstanceExists, InstanceGone
from devhost.durable.protocol import TERMINAL, iso, timespan
from devhost.durable.store import StateOutdated
from devhost.durable.workers import AppIndex, index_app, run_activity

__all__ = [
    "TERMINAL",
    "AppIndex",
    "DurableHost",
    "InstanceExists",
    "InstanceGone",
    "StateOutdated",
    "index_app",
    "iso",
    "run_activity",
    "timespan",
]
