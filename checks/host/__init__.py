"""host.* checks: this machine (OS, interfaces, VPN, proxy, clock, the softphone process)."""
