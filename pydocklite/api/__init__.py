"""The Docker Engine API face of pydocklite (`pydocklite system service`).

    http.py        HTTP/1.1 on a socket: bounded request reading, responses, chunked
                   streams, hijacked (101 UPGRADED) streams
    server.py      listeners (unix socket, loopback TCP, systemd's LISTEN_FDS), a thread per
                   connection, the idle timer, routing and the one error -> status mapping
    routes.py      the route table: (method, path pattern) -> handler
    context.py     what handlers share: settings, services, running attach/exec sessions,
                   exit notifications of the containers this service started
    streams.py     Docker's stream framing (8-byte multiplexed headers, raw for a tty) and
                   the pumps between a client's socket and a container's pipes
    containers.py, create.py, execs.py, images.py, build.py, system.py, volumes.py,
    networks.py    the handlers: thin translators from HTTP to the engine services

Nothing here re-implements a verb: handlers call the same services as pydocklite/cli/.
"""
