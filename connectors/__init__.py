"""Example connectors: each is documentation, an end-to-end test subject, and a template to copy."""
