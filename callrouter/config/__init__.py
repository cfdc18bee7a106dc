"""callrouter.config."""
