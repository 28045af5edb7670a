"""The one error type: bad input, named parameter, allowed values."""

__all__ = ["SymcostError"]


class SymcostError(ValueError):
    """Raised for any invalid argument; the message names the parameter and what is allowed."""
