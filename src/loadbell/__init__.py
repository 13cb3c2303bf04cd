"""loadbell: a self-hosted notification hub for load tests."""

__version__ = "0.1.0"
