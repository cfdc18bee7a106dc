"""callrouter.api."""
