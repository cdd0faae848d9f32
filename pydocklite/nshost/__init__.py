"""The per-user namespace host: one long-lived process per user (per runtime directory)
that holds the user namespace every container joins, a network namespace with a bridge
per network, the outbound helper (slirp4netns or pasta), the DNS server for container
names, and the image lowers shared by the containers of one image.

    netlink.py   rtnetlink over a NETLINK_ROUTE socket: bridges, veths, addresses, routes
    nft.py       the nf_tables rules (masquerade, isolation between networks)
    dns.py       DNS messages and the name tables (pure)
    ipam.py      addresses: pools, subnets, allocation (pure)
    server.py    the host process: its control socket, event loop, state file, idle exit
    launch.py    starting it (the pause process, id maps, outbound helper), adopting a
                 survivor's namespaces after the host was killed
    client.py    what shims and services call: ensure it runs, ask it things
    lowers.py    the shared read-only image views (one FUSE server per image)

Nothing here knows a container record: requests carry what they need (frozen values
from the networks service), so the shim and the services both talk to it.
"""
