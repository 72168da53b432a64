"""What the test tiers share: real servers (``servers``: ltx2-server as a subprocess, uvicorn in a thread,
image hosts), the Segmind client side (``api``), a webhook receiver (``webhooks``), redis-server
(``redis_server``), both job stores opened alike for the store tests (``job_stores``), moto S3 (``s3``),
the scale-out cluster (``scale_out``), load generation (``load``), mp4 probing (``media_probe``), hostile
images, the schemathesis setup, and the fixture generators the worker loads as
``--model tests.support.fixture_generators:NAME``. The tier markers are applied by ``tiers``.
"""
