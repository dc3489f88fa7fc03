"""MChat benchmark: `python -m bench.run [--postgres] [--quick]` (or `make bench`).

Starts its own stack (PostgreSQL or SQLite, Mosquitto with the plugin, bridge processes),
measures it against a trivial echo responder on the same broker, profiles the bridge, and
writes bench/REPORT.md plus the raw numbers as JSON. Not part of the test suite.
"""
