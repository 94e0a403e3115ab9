"""The version of unlearnkit, in one place (the package, the provenance line and the Colab cell read it)."""

__version__ = "0.2.0"
