"""RQ entry points: the job that runs a node, and the worker process."""
