"""The protocol layer: code that speaks SIP, WebSocket, STUN, TURN, TLS and DNS and knows nothing
of checks or reports. Probes in the family packages use it; it imports nothing from them."""
