"""Content store of layers, layer indexes and snapshot mounts. Never imports pydocklite or registry."""
