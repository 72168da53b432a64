"""Workers: the supervisor and pool that run worker children (in the API process of ``serve``, or in a
worker host, host.py with redis_work.py for ``--store redis``), the devices they run on, and the messages
crossing the pipe. child.py alone runs in the spawned worker child: it loads the generator from
``pipelines`` (torch) and runs one job at a time.
"""
