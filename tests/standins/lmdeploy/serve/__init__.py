"""Stand-in for ``lmdeploy.serve`` (only what ``Pipeline`` uses)."""
