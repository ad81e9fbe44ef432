"""The two files an exported Hugging Face folder ships for ``trust_remote_code=True``.

They are copied verbatim into the folder by :mod:`connectomes.io.export` and must stay self-contained
(torch + transformers only): transformers loads them from the folder without this package installed.
Their file and class names are the authors' (``config.GPTConfig``, ``model.GPT``) so that the
authors' folders and ours carry the same ``auto_map``.
"""
