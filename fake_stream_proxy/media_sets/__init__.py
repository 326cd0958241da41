"""Media Sets API v2: media sets, their transactions and items."""
