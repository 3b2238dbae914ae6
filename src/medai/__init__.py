"""medai: from a user's clinical data to a validated, explained, registered model."""

__version__ = "0.1.0"
