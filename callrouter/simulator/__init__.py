"""callrouter.simulator."""
