"""Event-driven ingestion: the dataset registry, routing an upload event to its dataset, and
the watcher's debounce state."""
