"""The API's routes, one ``APIRouter`` per resource, included by ``server.api.app.create_app`` in this
order: Segmind's submit routes (segmind.py), job status/result/cancel (jobs.py), output files
(outputs.py), ops (health, ready, metrics: ops.py), the playground (playground.py) and the events
stream (events.py). Dependencies come from server/api/deps.py, bodies from server/api/bodies.py.
"""
