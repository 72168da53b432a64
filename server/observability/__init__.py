"""Logs (text or JSON lines with request ids), Prometheus metrics and the redaction of URL secrets:
used in the API process and worker hosts.
"""
