"""``lmdeploy/version.py``: the version this stand-in models."""

__version__ = '0.18.0'
short_version = __version__
version_info = (0, 18, 0)
