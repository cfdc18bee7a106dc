"""callrouter: sticky-agent and specialist routing for Asterisk call centers."""
