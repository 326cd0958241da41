"""Streams API v2, its subscribers, and the legacy stream-proxy routes."""
