"""The one scoring interface every evaluation uses (lm-evaluation-harness's narrow model interface).

- ``loglikelihood``: summed log p(continuation | context) for many (context, continuation) pairs;
- ``token_logprobs``: log p of every token of a long text given all before it (sliding window);
- ``last_token_hidden``: the residual stream at each sequence's last token, at every layer.

Batches are right-padded; with causal attention a padded position never influences a real one, so
results do not depend on the batch size. Requests are sorted by length for speed and returned in
input order.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class ScoringLM:
    def __init__(self, model, tokenizer, device="cpu", batch_size: int = 16):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self.max_length = model.config.block_size

    def _bar(self, total: int, desc: str | None):
        if not desc:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="req", leave=False, dynamic_ncols=True)

    def _fit(self, ctx: list[int], cont: list[int]) -> tuple[list[int], int]:
        """Input ids and the number of scored (continuation) tokens after truncating from the left.

        The input is context + continuation minus its last token; contexts lose their oldest tokens
        first. A continuation longer than the window keeps only its last max_length tokens.
        """
        if not cont:
            raise ValueError("empty continuation")
        cont = cont[-self.max_length:]
        full = (ctx + cont)[-(self.max_length + 1):]
        if len(full) == len(cont):  # nothing left to condition the first token on
            return full[:-1], len(cont) - 1
        return full[:-1], len(cont)

    @torch.no_grad()
    def loglikelihood(self, requests: list[tuple[list[int], list[int]]], desc: str | None = None) -> list[tuple[float, int]]:
        fitted = [self._fit(list(c), list(x)) + (list(x)[-self.max_length:],) for c, x in requests]
        order = sorted(range(len(fitted)), key=lambda i: -len(fitted[i][0]))
        out: list[tuple[float, int] | None] = [None] * len(fitted)
        bar = self._bar(len(fitted), desc)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            L = max(len(fitted[i][0]) for i in idx)
            inp = torch.zeros((len(idx), L), dtype=torch.long)
            for r, i in enumerate(idx):
                ids = fitted[i][0]
                inp[r, :len(ids)] = torch.tensor(ids)
            logp = F.log_softmax(self.model(inp.to(self.device)).float(), dim=-1).cpu()
            for r, i in enumerate(idx):
                ids, n, cont = fitted[i]
                targets = torch.tensor(cont[len(cont) - n:])
                pos = torch.arange(len(ids) - n, len(ids))
                out[i] = (float(logp[r, pos, targets].sum()), n)
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out  # type: ignore[return-value]

    @torch.no_grad()
    def token_logprobs(self, ids: list[int]) -> np.ndarray:
        """log p(ids[t] | ids[:t]) for t = 1..len-1 (nats). Longer than the window: windows advance by
        half the window, each new token scored once with at least half a window of context."""
        ids = list(ids)
        n = len(ids)
        out = np.full(max(0, n - 1), np.nan, dtype=np.float64)
        W = self.max_length
        stride = max(1, W // 2)
        scored_to = 1  # next token index to score
        start = 0
        while scored_to < n:
            end = min(start + W + 1, n)
            window = torch.tensor(ids[start:end], dtype=torch.long, device=self.device)[None]
            logp = F.log_softmax(self.model(window[:, :-1]).float(), dim=-1)[0].cpu()
            tgt = window[0, 1:].cpu()
            lp = logp[torch.arange(len(tgt)), tgt].double().numpy()  # lp[j] = log p(ids[start+j+1])
            first = scored_to - start - 1
            out[scored_to - 1:end - 1] = lp[first:]
            scored_to = end
            start += stride
        return out

    @torch.no_grad()
    def last_token_hidden(self, sequences: list[list[int]], desc: str | None = None) -> np.ndarray:
        """[N, n_layer+1, n_embd] float32: embedding output and each block's output at the last token."""
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        cfg = self.model.config
        out = np.zeros((len(sequences), cfg.n_layer + 1, cfg.n_embd), dtype=np.float32)
        bar = self._bar(len(sequences), desc)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            seqs = [list(sequences[i])[-self.max_length:] for i in idx]
            L = max(len(s) for s in seqs)
            inp = torch.zeros((len(idx), L), dtype=torch.long)
            for r, s in enumerate(seqs):
                inp[r, :len(s)] = torch.tensor(s)
            _, hidden = self.model(inp.to(self.device), return_hidden=True)
            last = torch.tensor([len(s) - 1 for s in seqs])
            stack = torch.stack([h.float()[torch.arange(len(idx)), last.to(h.device)] for h in hidden], dim=1).cpu().numpy()
            out[idx] = stack
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out
