"""The route table: (method, path pattern) -> "module:function" under pydocklite.api.

Patterns name their parts; {name} takes one path segment, {name*} the rest (image names
have slashes: /images/registry:5000/a/b:tag/json). Handler modules are imported on first
use. A known path with another method answers 405, an unknown one 404, as dockerd.
"""
from __future__ import annotations

import importlib
import re

from pydocklite.api.http import HttpError

ROUTES = [
    # system
    ("GET", "/_ping", "system:ping"), ("HEAD", "/_ping", "system:ping"),
    ("GET", "/version", "system:version"), ("GET", "/info", "system:info"),
    ("GET", "/events", "system:events"), ("GET", "/system/df", "system:df"),
    ("POST", "/auth", "system:auth"),
    # containers
    ("GET", "/containers/json", "containers:list_"),
    ("POST", "/containers/create", "create:create"),
    ("POST", "/containers/prune", "containers:prune"),
    ("GET", "/containers/{id}/json", "containers:inspect"),
    ("POST", "/containers/{id}/start", "containers:start"),
    ("POST", "/containers/{id}/stop", "containers:stop"),
    ("POST", "/containers/{id}/restart", "containers:restart"),
    ("POST", "/containers/{id}/kill", "containers:kill"),
    ("POST", "/containers/{id}/wait", "containers:wait"),
    ("POST", "/containers/{id}/rename", "containers:rename"),
    ("POST", "/containers/{id}/resize", "containers:resize"),
    ("POST", "/containers/{id}/pause", "containers:pause"),
    ("POST", "/containers/{id}/unpause", "containers:unpause"),
    ("POST", "/containers/{id}/update", "containers:update"),
    ("POST", "/containers/{id}/attach", "attach:attach"),
    ("GET", "/containers/{id}/logs", "containers:logs"),
    ("GET", "/containers/{id}/top", "containers:top"),
    ("GET", "/containers/{id}/stats", "containers:stats"),
    ("GET", "/containers/{id}/changes", "containers:changes"),
    ("GET", "/containers/{id}/export", "containers:export"),
    ("HEAD", "/containers/{id}/archive", "archive:stat"),
    ("GET", "/containers/{id}/archive", "archive:get"),
    ("PUT", "/containers/{id}/archive", "archive:put"),
    ("DELETE", "/containers/{id}", "containers:remove"),
    ("POST", "/containers/{id}/exec", "execs:create"),
    # exec
    ("POST", "/exec/{id}/start", "execs:start"),
    ("POST", "/exec/{id}/resize", "execs:resize"),
    ("GET", "/exec/{id}/json", "execs:inspect"),
    # images
    ("GET", "/images/json", "images:list_"),
    ("POST", "/images/create", "images:create"),
    ("POST", "/images/load", "images:load"),
    ("GET", "/images/get", "images:get_many"),
    ("POST", "/images/prune", "images:prune"),
    ("GET", "/images/search", "images:search"),
    ("GET", "/images/{name*}/json", "images:inspect"),
    ("GET", "/images/{name*}/history", "images:history"),
    ("POST", "/images/{name*}/push", "images:push"),
    ("POST", "/images/{name*}/tag", "images:tag"),
    ("GET", "/images/{name*}/get", "images:get"),
    ("DELETE", "/images/{name*}", "images:remove"),
    ("GET", "/distribution/{name*}/json", "images:distribution"),
    ("POST", "/build", "build:build"), ("POST", "/build/prune", "build:prune"),
    ("POST", "/commit", "images:commit"),
    # volumes
    ("GET", "/volumes", "volumes:list_"), ("POST", "/volumes/create", "volumes:create"),
    ("POST", "/volumes/prune", "volumes:prune"),
    ("GET", "/volumes/{name}", "volumes:inspect"), ("DELETE", "/volumes/{name}", "volumes:remove"),
    # networks
    ("GET", "/networks", "networks:list_"), ("POST", "/networks/create", "networks:create"),
    ("POST", "/networks/prune", "networks:prune"),
    ("GET", "/networks/{id}", "networks:inspect"), ("DELETE", "/networks/{id}", "networks:remove"),
    ("POST", "/networks/{id}/connect", "networks:connect"),
    ("POST", "/networks/{id}/disconnect", "networks:disconnect"),
]


def _compile(pattern: str):
    out = "^"
    for part in re.split(r"(\{[a-z]+\*?\})", pattern):
        if part.startswith("{"):
            name = part[1:-1]
            out += f"(?P<{name[:-1]}>.+)" if name.endswith("*") else f"(?P<{name}>[^/]+)"
        else:
            out += re.escape(part)
    return re.compile(out + "$")


class Router:
    def __init__(self):
        self.table = [(method, _compile(pattern), target) for method, pattern, target in ROUTES]
        self.cache = {}

    def match(self, method: str, path: str):
        path_known = False
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        for m, regex, target in self.table:
            found = regex.match(path)
            if not found:
                continue
            if m != method:
                path_known = True
                continue
            return self._handler(target), found.groupdict()
        if path_known:
            raise HttpError(405, f"method {method} is not allowed on {path}")
        raise HttpError(404, f"page not found: {path}")

    def _handler(self, target: str):
        fn = self.cache.get(target)
        if fn is None:
            module, _, name = target.partition(":")
            fn = getattr(importlib.import_module(f"pydocklite.api.{module}"), name)
            self.cache[target] = fn
        return fn
