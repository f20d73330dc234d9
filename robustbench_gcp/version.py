"""The package version, importable without torch (``gcp-robust --version`` stays instant)."""

__version__ = "0.3.0"
