"""Fault injection: rules the admin adds over HTTP, applied by a middleware (routes.py documents the API)."""
