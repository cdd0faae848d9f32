"""Container records on disk: state facts, names, the container store."""
