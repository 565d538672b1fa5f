"""plait's rules, pure: the state machine of runs and steps, claiming, flow control, gates,
loops, spawning, forks and diffs, retries, cron. No I/O, no clock, no asyncio: every function
takes what it decides on and returns (or yields) what it decided, so each store persists the
same decisions and the rules are tested without a database.

Internal: the public API is `plait.__all__`.
"""
