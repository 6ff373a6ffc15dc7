"""Load generator for the mmserve HTTP API, built on locust (used as a library).

    python -m bench loadtest --url http://127.0.0.1:8000 --routes auto --sweep 1,2,4,8 \
        --duration 30 --warmup 5 --out docs/bench/run.json

locust monkeypatches the standard library with gevent when imported, so only `__main__` and
`locustfile` import it, and this package never imports ray: benchmarks that start Ray run this tool as a subprocess.
See docs/benchmarks.md.
"""
