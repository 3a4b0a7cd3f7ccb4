"""The domain model: aggregates decide, events record what was decided. Pure: no I/O, nothing of ours imported."""
