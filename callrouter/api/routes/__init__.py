"""The HTTP resources, one module per area; each builds its router when asked."""
