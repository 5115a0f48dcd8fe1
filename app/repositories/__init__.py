"""Persistence: every SQL statement the engine runs. Nothing here commits."""
