"""The operator console and admin dashboard: static pages served next to the HTTP API."""
