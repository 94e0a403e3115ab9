"""The version of unlearnkit and the repository it comes from, in one place: the package, the
provenance line, the Colab badge and the Colab install cell (:mod:`unlearnkit.colab`) read them."""

__version__ = "0.2.0"
REPOSITORY = "https://github.com/unlearnkit/unlearnkit"
