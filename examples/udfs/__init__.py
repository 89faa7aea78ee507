"""Example user functions for geneva backfills (importable as `examples.udfs.<module>` from the repo root)."""
