"""The fake's read-only web page at `/`: lineage, resources, jobs, runtimes, streams and datasets, live."""
