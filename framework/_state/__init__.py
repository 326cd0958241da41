"""Stateful processing: keyed state and event-time windows, checkpointed to a changelog stream in Foundry."""
