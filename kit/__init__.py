"""kit: known-good LLM inference stacks on Modal."""

__version__ = "0.1.0"
