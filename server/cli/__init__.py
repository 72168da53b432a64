"""The ``ltx2-server`` console script: main.py parses the options and runs one subcommand's module,
serve.py (the API process), worker.py (a worker host) or generate.py (one video, no server), each in the
process it starts. ``python -m server.cli`` is the same command.
"""
