"""Media set handles: items by path or rid, uploads (optionally transactional), streamed reads."""
