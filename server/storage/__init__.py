"""Where results (videos) and inputs live: a local directory, a shared path or an S3 bucket
(results.py). Used by the API process and worker hosts, never by the worker child; imports neither
torch nor FastAPI.
"""
