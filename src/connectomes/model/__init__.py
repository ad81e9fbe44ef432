"""Layer 2, the network: the GPT of docs/method.md §1 (``gpt``) and the ``model`` config section (``config``)."""
