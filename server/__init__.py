"""ltx2-server: the API process (``api``, ``jobs``), worker hosts and the worker children (``workers``).

Subpackages by where the code runs: ``api`` and ``jobs`` in the API process, ``workers`` in the API
process or a worker host and (``workers.child`` only) the spawned worker child, the one module that
reaches ``pipelines`` and torch. Shared by all: settings.py (the only reader of LTX2_* variables),
errors.py, clock.py, ``storage``, ``observability``. See docs/architecture.md.
"""
