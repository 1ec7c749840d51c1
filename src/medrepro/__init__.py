"""medrepro: reproducible regeneration of medical-imaging paper results."""

__version__ = "0.1.0"
