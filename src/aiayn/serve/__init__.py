"""Serving a trained model over HTTP: `aiayn serve` (FastAPI and uvicorn), the JSON API, dynamic
batching, and the explorer page. The bounds' defaults are here, apart from the web stack, so that
`aiayn serve`'s options can show them without importing it."""

# the bounds on what a client can hold (aiayn.serve.bounds), as `serve` takes them by default
MAX_CONNECTIONS, HEAD_TIMEOUT_S, BODY_TIMEOUT_S = 64, 10.0, 30.0
# continuous batching of generations (aiayn.serve.scheduler): sequences at once, seconds each
MAX_ROWS, TIME_LIMIT_S = 64, 600.0
