"""bireco: decoder LLMs as text embedders with bidirectional reconstruction (arXiv 2509.03020)."""

__version__ = "0.1.0"
