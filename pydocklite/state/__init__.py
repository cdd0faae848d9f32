"""Container records: the facts (container.py) and their on-disk store (store.py)."""
