"""callrouter.store."""
