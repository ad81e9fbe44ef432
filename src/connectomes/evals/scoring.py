"""The one scoring interface every evaluation uses (lm-evaluation-harness's narrow model interface).

- ``loglikelihood``: summed log p(continuation | context) for many (context, continuation) pairs;
- ``token_logprobs``: log p of every token of a long text given the tokens before it (sliding window);
- ``loglikelihood_rolling``: summed log p of whole texts read from the start of text (the same windows, batched);
- ``last_token_hidden``: the residual stream at each sequence's last token, at every layer.

Batches are right-padded. Attention is causal, so a padded position (always after the real tokens of
its row) never influences a real one, and a row's scores do not depend on what it is batched with:
batch size 1 and 16 agree to float rounding. Requests are sorted longest first (so a batch holds rows
of similar length and the first batch shows the peak memory at once) and returned in input order.

Precision: fp32 on CPU (a lower-precision model is cast to fp32 in place); on CUDA the model's own
dtype is used as is. Log-probabilities are computed in fp32 and summed in fp64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..core.progress import bar


class ScoringLM:
    def __init__(self, model, tokenizer, device="cpu", batch_size: int = 16):
        self.device = torch.device(device)
        model = model.to(self.device)
        if self.device.type == "cpu" and next(model.parameters()).dtype != torch.float32:
            model = model.float()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = max(1, int(batch_size))
        self.max_length = int(model.config.block_size)

    # -- helpers ---------------------------------------------------------------------------------

    @staticmethod
    def _bar(total: int, desc: str | None, unit: str = "req"):
        if not desc:
            return None
        return bar(total, desc, unit, inner=True)  # the evaluation's stage line says what starts

    def _fit(self, context: list[int], continuation: list[int]) -> tuple[list[int], list[int]]:
        """(model input, scored targets) for one request.

        The model reads context + continuation minus its last token, at most ``max_length`` tokens:
        the context loses its oldest tokens first. Only a continuation that alone exceeds the window
        is cut, also from the left, keeping its last ``max_length`` tokens (each still conditioned on
        the ``max_length`` tokens before it). An empty context is replaced by the end-of-text token,
        as lm-evaluation-harness does, so the first continuation token has something to condition on.
        """
        if not continuation:
            raise ValueError("empty continuation: there is nothing to score")
        if not context:
            context = [self.tokenizer.eot_id]
        full = (context + continuation)[-(self.max_length + 1):]
        n = min(len(continuation), self.max_length)
        return full[:-1], full[-n:]

    def _padded(self, rows: list[list[int]]) -> torch.Tensor:
        """Right-padded batch; the pad id (0) is never read by a real position under causal attention."""
        inp = torch.zeros((len(rows), max(len(r) for r in rows)), dtype=torch.long)
        for r, ids in enumerate(rows):
            inp[r, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return inp.to(self.device)

    @staticmethod
    def _target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(target) per row of ``logits`` [N, V]; log_softmax over only the rows that are scored,
        which for a 50k vocabulary is most of the cost saved."""
        logp = F.log_softmax(logits.float(), dim=-1)
        return logp.gather(1, targets.to(logp.device)[:, None])[:, 0].double().cpu()

    # -- the interface ---------------------------------------------------------------------------

    @torch.no_grad()
    def loglikelihood(self, requests: list[tuple[list[int], list[int]]], desc: str | None = None) -> list[tuple[float, int]]:
        """[(sum of log p(continuation tokens) in nats, number of tokens scored)] in input order.

        See ``_fit`` for how a request longer than the window is truncated; ``n_tokens`` is smaller
        than the continuation only when the continuation alone exceeds ``max_length``.
        """
        fitted = [self._fit(list(c), list(x)) for c, x in requests]
        order = sorted(range(len(fitted)), key=lambda i: -len(fitted[i][0]))
        out: list[tuple[float, int] | None] = [None] * len(fitted)
        bar = self._bar(len(fitted), desc)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            logits = self.model(self._padded([fitted[i][0] for i in idx]))
            picked, targets = [], []
            for r, i in enumerate(idx):
                inp, tgt = fitted[i]
                # logits[t] predicts token t+1, so the last len(tgt) input positions predict tgt
                picked.append(logits[r, len(inp) - len(tgt):len(inp)])
                targets.append(torch.tensor(tgt, dtype=torch.long))
            lp = self._target_logprobs(torch.cat(picked), torch.cat(targets))
            for i, part in zip(idx, lp.split([len(t) for t in targets])):
                out[i] = (float(part.sum()), len(part))
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out  # type: ignore[return-value]

    def windows(self, n: int) -> list[tuple[int, int, int]]:
        """The sliding windows that score tokens 1..n-1 of an n-token sequence: (start, first, end), the
        model reads tokens [start, end - 1) and scores [first, end), each given every token from ``start``.

        Within the window this is one pass. Longer sequences use windows of ``max_length`` advancing by
        ``max_length // 2``: every token after the first is scored exactly once, and every token beyond
        the first window has at least ``max_length // 2`` tokens of context.
        """
        W = self.max_length
        stride = max(1, W // 2)
        out, start, first = [], 0, 1  # first: the next token index without a score
        while first < n:
            end = min(start + W + 1, n)
            out.append((start, first, end))
            first = end
            start += stride
        return out

    @torch.no_grad()
    def token_logprobs(self, ids: list[int], batched: bool = False) -> np.ndarray:
        """log p(ids[t] | ids[:t]) in nats for t = 1..len(ids)-1 (len(ids)-1 values, float64), in the
        sliding windows of :meth:`windows`. ``batched`` reads ``batch_size`` windows per forward pass (the same
        numbers to float rounding, many times faster on a long text); off, one window per pass, as every result
        made before the option was."""
        ids = [int(t) for t in ids]
        out = np.empty(max(0, len(ids) - 1), dtype=np.float64)
        if batched:
            return self._token_logprobs_batched(ids, out)
        for start, first, end in self.windows(len(ids)):
            window = torch.tensor(ids[start:end], dtype=torch.long, device=self.device)
            logits = self.model(window[None, :-1])[0]
            k = first - start - 1  # logits[j] predicts ids[start + j + 1]
            out[first - 1:end - 1] = self._target_logprobs(logits[k:], window[k + 1:]).numpy()
        return out

    def _token_logprobs_batched(self, ids: list[int], out: np.ndarray) -> np.ndarray:
        wins = self.windows(len(ids))
        for b in range(0, len(wins), self.batch_size):
            group = wins[b:b + self.batch_size]
            logits = self.model(self._padded([ids[start:end - 1] for start, _, end in group]))
            for r, (start, first, end) in enumerate(group):
                k = first - start - 1  # logits[j] predicts ids[start + j + 1]
                target = torch.tensor(ids[first:end], dtype=torch.long)
                out[first - 1:end - 1] = self._target_logprobs(logits[r, k:end - 1 - start], target).numpy()
        return out

    def loglikelihood_rolling(self, sequences: list[list[int]], desc: str | None = None) -> list[tuple[float, int]]:
        """[(sum of log p of every token of the sequence in nats, number of tokens)] in input order, each
        sequence read after the end-of-text token (as lm-evaluation-harness's ``loglikelihood_rolling``
        does), so its first token is scored too. A sequence longer than the window is scored in the
        windows of :meth:`token_logprobs`, never cut: each window is one :meth:`loglikelihood` request
        (context = the window's unscored tokens), so short and long sequences share the batches, sorted by
        length. A sequence within the window is one request, the same as ``loglikelihood([([], seq)])``."""
        requests, owner = [], []
        for k, seq in enumerate(sequences):
            ids = [self.tokenizer.eot_id] + [int(t) for t in seq]
            if len(ids) < 2:
                raise ValueError(f"sequence {k} is empty: there is nothing to score")
            for start, first, end in self.windows(len(ids)):
                requests.append((ids[start:first], ids[first:end]))
                owner.append(k)
        totals = [0.0] * len(sequences)
        counts = [0] * len(sequences)
        for k, (logprob, n) in zip(owner, self.loglikelihood(requests, desc=desc)):
            totals[k] += logprob
            counts[k] += n
        return list(zip(totals, counts))

    @torch.no_grad()
    def last_token_hidden(self, sequences: list[list[int]], desc: str | None = None) -> np.ndarray:
        """[N, n_layer+1, n_embd] float32: the embedding output (index 0) and each block's output
        (before the final norm) at each sequence's last real token. Sequences longer than the window
        keep their last ``max_length`` tokens."""
        seqs = [list(s)[-self.max_length:] for s in sequences]
        for k, s in enumerate(seqs):
            if not s:
                raise ValueError(f"sequence {k} is empty: there is no last token to read")
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        cfg = self.model.config
        out = np.zeros((len(seqs), cfg.n_layer + 1, cfg.n_embd), dtype=np.float32)
        bar = self._bar(len(seqs), desc, unit="seq")
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            _, hidden = self.model(self._padded([seqs[i] for i in idx]), return_hidden=True)
            rows = torch.arange(len(idx), device=self.device)
            last = torch.tensor([len(seqs[i]) - 1 for i in idx], device=self.device)
            out[idx] = torch.stack([h[rows, last].float() for h in hidden], dim=1).cpu().numpy()
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out
