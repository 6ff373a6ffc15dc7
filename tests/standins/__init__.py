"""Stand-ins for what CI has no hardware for (a CUDA GPU, lmdeploy), each checked against the real API.

``lmdeploy/``: a fake lmdeploy 0.18.0 package, installed per test by ``lmdeploy_fixture``.
"""
