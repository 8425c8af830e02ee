"""Real peers for integration tests: Kamailio, sipp, network namespaces, PulseAudio, coturn.

Plain helpers with no pytest dependency; ``tests/conftest.py`` wraps them in fixtures.
Importing this package starts nothing.
"""
