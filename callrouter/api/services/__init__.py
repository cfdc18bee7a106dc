"""Use cases of the HTTP side: each takes the request's transaction and the caller's token."""
