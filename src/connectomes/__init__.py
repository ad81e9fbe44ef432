"""connectomes: generational connectome studies of language models (Kotar & Tuckute 2025)."""

__version__ = "0.1.0"
