"""callrouter.service."""
