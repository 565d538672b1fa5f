"""The worker: claim ready steps under leases, run them, commit their outcomes in groups; and
what it does beside that (idle waits, store outages, handler threads, its registration).

Internal: the public API is `plait.__all__` (`Engine.run_worker`, `plait worker`).
"""
