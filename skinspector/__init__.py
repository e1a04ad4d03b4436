"""SKINspectoR edge: offline dermatology decision support for remote clinics."""

__version__ = "0.1.0"
__all__ = ["__version__"]
