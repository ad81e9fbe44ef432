"""The exported folder under transformers itself: AutoModelForCausalLM with trust_remote_code gives our
logits bit for bit (CPU fp32), AutoTokenizer gives our token ids. Skipped only without transformers
(it is in the test extra, so CI runs it)."""

import os
import tempfile

# Offline, and the copied remote code kept out of the user's cache: both must be set before import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_MODULES_CACHE", tempfile.mkdtemp(prefix="hf_modules_"))

import pytest  # noqa: E402
import torch  # noqa: E402

transformers = pytest.importorskip("transformers")

from connectomes.io.load import load_model, load_tokenizer_for
from connectomes.data.tokenizers import load_tokenizer  # noqa: E402
from connectomes.io.export import export_hf
from connectomes.model.gpt import GPT, GPTConfig

from test_hf import TEXTS, _authors_folder, _ids, _step  # noqa: E402


def _auto(folder):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), trust_remote_code=True, dtype=torch.float32)
    return model.eval()


def test_bytes_export_logits_hidden_states_and_tokens_equal_ours(tmp_path):
    model, step = _step(tmp_path)
    out = export_hf(step, tmp_path / "hf_bytes")
    hf = _auto(out)
    idx = _ids(T=60)  # past block_size: RoPE has no position limit in either
    with torch.no_grad():
        ours, hidden = model(idx, return_hidden=True)
        res = hf(input_ids=idx, output_hidden_states=True)
    assert torch.equal(res.logits, ours)
    assert len(res.hidden_states) == len(hidden) == 3
    assert all(torch.equal(a, b) for a, b in zip(res.hidden_states, hidden))
    with torch.no_grad():  # an all-ones attention_mask takes the same path
        assert torch.equal(hf(input_ids=idx, attention_mask=torch.ones_like(idx)).logits, ours)
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    ours_tok = load_tokenizer("bytes")
    for text in TEXTS:
        assert tok(text)["input_ids"] == ours_tok.encode(text), text
        assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.eos_token_id == ours_tok.eot_id == 0 and len(tok) == 256


def test_left_padding_mask_gives_the_unpadded_logits(tmp_path):
    model, step = _step(tmp_path)
    hf = _auto(export_hf(step, tmp_path / "hf_pad"))
    idx = _ids(batch=1, T=10)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), idx], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 10, dtype=torch.long)], dim=1)
    with torch.no_grad():
        got = hf(input_ids=padded, attention_mask=mask).logits[:, 3:]
        assert torch.allclose(got, model(idx), atol=1e-5, rtol=0)


def test_gpt2_export_tokenizer_and_logits(tmp_path, data_root):
    cfg = GPTConfig(vocab_size=50304, n_layer=1, n_head=2, n_embd=16, block_size=32)
    model, step = _step(tmp_path, cfg=cfg, tokenizer="gpt2", gpt2_bpe_file=str(data_root / "gpt2" / "gpt2.tiktoken"))
    out = export_hf(step, tmp_path / "hf_gpt2")
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    ours_tok = load_tokenizer("gpt2", gpt2_bpe_file=data_root / "gpt2" / "gpt2.tiktoken")
    for text in TEXTS + [" leading space", "numbers 12345 and\ttabs"]:
        assert tok(text)["input_ids"] == ours_tok.encode(text), text
    assert tok.eos_token_id == 50256
    hf = _auto(out)
    idx = torch.tensor([ours_tok.encode(TEXTS[3])])
    with torch.no_grad():
        assert torch.equal(hf(input_ids=idx).logits, model(idx))


def test_bpe_export_tokenizer(tmp_path):
    from connectomes.data.tokenizers import train_bpe

    data = tmp_path / "data"
    train_bpe("bpe-270", ["the cat sat on the mat. " * 50, "a dog ran far away, then back! " * 50], data)
    cfg = GPTConfig(vocab_size=270, n_layer=1, n_head=2, n_embd=16, block_size=32)
    model, step = _step(tmp_path, cfg=cfg, tokenizer="bpe-270", data_dir=str(data))
    out = export_hf(step, tmp_path / "hf_bpe")
    tok = transformers.AutoTokenizer.from_pretrained(str(out))
    ours_tok = load_tokenizer("bpe-270", data_dir=data)
    for text in TEXTS + ["the cat ran back"]:
        assert tok(text)["input_ids"] == ours_tok.encode(text), text
    # our loader reads the exported folder's own tokenizer.json
    _, info = load_model(out)
    assert load_tokenizer_for(info).encode("the mat") == ours_tok.encode("the mat")


def test_authors_layout_loads_under_transformers_with_our_code(tmp_path):
    """An authors'-layout folder plus our remote code: transformers reads their config fields and
    their weights (RoPE buffers ignored) and gives our logits."""
    from connectomes.io.export import write_remote_code

    torch.manual_seed(5)
    model = GPT(GPTConfig(vocab_size=256, n_layer=2, n_head=4, n_embd=32, block_size=32)).eval()
    folder = _authors_folder(tmp_path, model)
    write_remote_code(folder)
    hf = _auto(folder)
    assert hf.config.n_head == 4 and hf.config.max_position_embeddings == 32
    idx = _ids(T=20)
    with torch.no_grad():
        assert torch.equal(hf(input_ids=idx).logits, model(idx))
