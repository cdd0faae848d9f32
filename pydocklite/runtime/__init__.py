"""OCI runtime: run runtime-spec bundles in user namespaces without root.

Library API (see api.py): create, start, state, kill, delete, run, exec_process, list_containers.
CLI with runc's verbs: runc_cli.main(argv).
"""
from __future__ import annotations
