"""plait's HTTP server (internal: its face is `plait serve` and `plait.server.create_app`):
the REST API over the Engine, its live feeds (server-sent events), the dashboard, and the
Prometheus metrics. Needs the `server` extra (FastAPI, uvicorn, prometheus-client).

    app.py        create_app: the ASGI application, its errors, its token
    api.py        the REST routes, one per Engine operation
    bodies.py     what the mutating routes accept (pydantic models: the 422s and the OpenAPI)
    responses.py  what the routes answer (pydantic models: the OpenAPI's response schemas)
    encode.py     Engine views to JSON
    views.py      what the dashboard reads: a run's graph, timeline, a step's detail
    live.py       server-sent events: a run's events, run-list changes
    metrics.py    Prometheus: the server's scrape, the worker's observer
    static/       the dashboard: plain HTML, CSS and JS, no build step, no network
"""
