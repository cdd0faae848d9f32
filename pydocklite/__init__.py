"""pydocklite: rootless, daemonless containers in one Python file."""

__version__ = "0.1.0"
