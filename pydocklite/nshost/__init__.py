"""The per-user namespace host: one long-lived process per user (per runtime directory)
that holds the user namespace every container joins, a network namespace with a bridge
per network, the outbound helper (slirp4netns or pasta), the DNS server for container
names, and the image lowers shared by the containers of one image.

    netlink.py   rtnetlink over a NETLINK_ROUTE socket: bridges, veths, addresses, routes
    nft.py       the nf_tables rules (masquerade, isolation between networks)
    dns.py       DNS messages, the name tables, the forwarder (pure but for a socket)
    ipam.py      addresses: pools, subnets, allocation (pure)
    etcfiles.py  a container's /etc/hosts and resolv.conf (pure)
    state.py     the host's records, its state file, the paths under the runtime dir
    pause.py     the pause process (fresh or joining a survivor's namespaces), the
                 outbound helper's start
    outbound.py  which outbound tool (slirp4netns, pasta) this host has
    host.py      the host's operations: boot/adopt, attach/detach, lowers, status
    serve.py     the host process: its control socket, DNS sockets, event loop, idle exit
    client.py    what shims and services call: find it, start it, ask it things
    lowers.py    the shared read-only image views (one FUSE server per image)

Nothing here knows a container record: requests carry what they need (frozen values
from the networks service), so the shim and the services both talk to it.
"""
