"""Datasets API v2: branches, transactions, files, schemas and readTable."""
