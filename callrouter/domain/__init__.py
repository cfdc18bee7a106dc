"""callrouter.domain."""
