"""The bench harness: every benchmark, load driver and fault run of mmserve, and what they share.

    python -m bench --help            # what there is, one line each
    python -m bench NAME [args]       # run one (NAME --help for its options)

Shared by all of them (and by the tests): `stack` (the one stack starter, `free_port`), `cluster`
(the multi-node variant), `wait` (the one wait-until helper), `load` (the one steady-load driver)
and `report` (percentiles and the JSON record written into docs/bench/). Importing this package
imports nothing else: locust (which patches the standard library) and ray load only in the
commands that need them.
"""
