"""API process of ltx2-server: FastAPI routes, the job table and the worker supervisor.

Nothing here imports torch; only ``server.worker_child`` reaches ``pipelines``, and only inside the
spawned worker process.
"""
