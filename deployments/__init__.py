"""Ray Serve deployments: one class per task, generic over that task's runner families.

`graphs/app.py` deploys each model entry as its task's class, named after the model.
"""
