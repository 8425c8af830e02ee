"""sipdiag: explains why calls to a contact-centre softphone fail."""

__version__ = "0.1.0"
