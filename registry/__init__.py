"""OCI distribution client and OCI image data model. Never imports pydocklite or snapshotter."""
