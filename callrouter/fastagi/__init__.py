"""callrouter.fastagi."""
