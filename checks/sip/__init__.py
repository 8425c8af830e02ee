"""sip.* checks: registration through pjsua2 (worker process) and over WebSocket."""
