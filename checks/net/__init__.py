"""net.* checks: name resolution, route, SIP reachability, STUN/NAT, SIP ALG, fragmentation,
media path and quality."""
