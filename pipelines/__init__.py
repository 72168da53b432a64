"""Generation side of ltx2-server: runs only in the worker process.

Imports torch and diffusers; never imports fastapi or ``server``.
"""
