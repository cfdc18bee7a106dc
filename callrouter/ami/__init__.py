"""callrouter.ami."""
