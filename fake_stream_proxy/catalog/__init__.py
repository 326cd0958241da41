"""Read-only views across services for people and tools: resources, jobs, lineage (the CLI and the web page)."""
