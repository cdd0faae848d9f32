"""`pydocklite runtime ...`: the runc-compatible OCI runtime verbs."""
from __future__ import annotations


def cmd_runtime(settings, argv) -> int:
    from pydocklite.runtime.runc_cli import main
    return main(list(argv))
