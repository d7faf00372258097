"""alignlab: token-level preference alignment for causal LMs."""

__version__ = "0.1.0"
