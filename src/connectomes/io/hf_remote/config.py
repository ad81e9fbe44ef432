"""Configuration of a connectomes GPT exported for Hugging Face ``trust_remote_code=True``.

Field names are the authors' (vocab_size, n_embd, n_layer, n_head, block_size, dropout, bias) so the
authors' code reads this folder and this code reads theirs; ``rope_base`` and ``norm_eps`` default to
the values the authors hard-code.
"""

from transformers import PretrainedConfig


class GPTConfig(PretrainedConfig):
    model_type = "GenerationalPruning.GPT"
    # lm-evaluation-harness and generation utilities look for these names to learn the window.
    attribute_map = {"max_position_embeddings": "block_size", "n_positions": "block_size",
                     "hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head"}

    def __init__(self, vocab_size=50304, n_embd=768, n_layer=12, n_head=12, block_size=1024, dropout=0.0,
                 bias=False, rope_base=10000.0, norm_eps=1e-6, **kwargs):
        self.vocab_size = vocab_size
        self.n_embd = n_embd
        self.n_layer = n_layer
        self.n_head = n_head
        self.block_size = block_size
        self.dropout = dropout
        self.bias = bias
        self.rope_base = rope_base
        self.norm_eps = norm_eps
        kwargs.setdefault("tie_word_embeddings", False)  # lm_head is a separate matrix
        super().__init__(**kwargs)
