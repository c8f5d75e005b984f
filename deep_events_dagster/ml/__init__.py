"""Training backends (torch / tensorflow), imported lazily inside each backend."""
