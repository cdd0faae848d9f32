"""The per-container shim and its parts: json-file logs, port forwarding."""
