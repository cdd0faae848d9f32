"""Dockerfile builder: parse, context, layer cache, executor (see builder.py)."""
