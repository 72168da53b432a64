"""Jobs, in the API process: the stored record and its guarded status machine (record.py), the
``JobStore`` interface (store.py) with its two implementations (memory_store.py for one host,
redis_store.py shared by API replicas and worker hosts), the service the routes ask (service.py) and its
parts: submission with image intake (intake.py, images.py, netguard.py), per-key limits, progress and ETA,
change events, the webhook outbox and retention.
"""
