"""The Docker Engine API face of pydocklite (`pydocklite system service`).

    http.py        HTTP/1.1 on a socket: bounded request reading, responses, chunked
                   streams, hijacked (101 UPGRADED) streams
    server.py      listeners (unix socket, loopback TCP, systemd's LISTEN_FDS), a thread per
                   connection, the idle timer, routing; status.py maps engine errors through
                   errors.classify (the one table)
    routes.py      the route table: (method, path pattern) -> handler
    context.py     what handlers share: settings, services, running attach/exec sessions,
                   exit notifications of the containers this service started
    streams.py     Docker's stream framing (8-byte multiplexed headers, raw for a tty), a
                   container's Stdio (pipes or a pty of ours) and the pumps to a client
    attach.py      attach (before the start: the shim gets the Stdio; running: the shim's
                   attach socket), the start (a shim forked at create), resize
    worker.py      pull, push and build in a forked child (the service stays small)
    events.py      /events from the per-user journal
    containers.py, create.py, execs.py, images.py, build.py, archive.py, system.py,
    volumes.py, networks.py    the handlers: thin translators to the engine services

Nothing here re-implements a verb: handlers call the same services as pydocklite/cli/.
"""
