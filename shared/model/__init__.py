"""The vocabulary every layer speaks: errors, settings, storage locations, the request and the
policy of a run, the run's status, artifact names, structured log records. No I/O."""
