"""Use cases. Each function owns its transaction and enqueues only after commit."""
