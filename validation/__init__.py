"""Measuring real modules and comparing them with symcost's closed forms (torch, fvcore and
transformers are imported lazily, inside the functions that need them).

One exception type: :class:`ValidationError` for anything that goes wrong while measuring or
attributing counts (an unexpected op, an unattributed count, an impossible request to a
counter); a user's bad input is a ``symcost.SymcostError``.
"""


class ValidationError(RuntimeError):
    """A measurement could not be made or attributed as the comparison requires."""
