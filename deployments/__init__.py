"""Ray Serve deployments: one per task, each owning a model runner."""
