"""The HTTP API, run in the API process (``serve``): the FastAPI app built by ``create_app`` (app.py) with
its middleware, Segmind's parameters and their validation into a JobSpec (params.py), the OpenAPI
document, Host-header and per-connection deadline handling, file serving of outputs, and the browser
playground (static/). It asks ``server.jobs`` for everything about jobs and never imports torch.
"""
