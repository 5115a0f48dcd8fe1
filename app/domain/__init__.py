"""The domain: states, DAGs, trigger rules, errors. Pure Python: no Flask, no SQL, no I/O."""
