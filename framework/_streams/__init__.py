"""Stream handles: inputs, outputs, dead letters, and stream schemas from models."""
