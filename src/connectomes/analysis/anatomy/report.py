"""The anatomy in words: the report's "Anatomy" section and the `connectomes anatomy` summary, both read
from anatomy.json's content (analysis.anatomy.target), every number beside its null."""

from __future__ import annotations

from pathlib import Path

import torch

from ...core.errors import UserError
from ...model.gpt import GPT
from ..figures import Embed, embed_lines
from .placement import short
from .target import AnatomyTarget, current_anatomy, write_anatomy

# figures drawn when anatomy.json was written: each under its caption in bold; one not drawn is left out
ANATOMY = Embed(("**{caption}**", "", "![{name}]({path})", ""))
REPORT_LIMIT = 2_000_000  # prunable weights up to which the report computes the anatomy itself (the CPU presets)


def _p(p) -> str:
    return "—" if p is None else ("< 1e-300" if p == 0 else f"{p:.2g}")


def _index(test: dict | None) -> str:
    if test is None:
        return "—"
    n = test["null_index"]
    return f"{test['index']:.2f} [{n['lo']:.2f}, {n['hi']:.2f}]"


def _ci(r: dict | None) -> str:
    return "—" if r is None else f"{r['rho']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}] (n {r['n']:,}, p {_p(r['p'])})"


def _axis_cells(a: dict) -> list[str]:
    flags = a["degree_flags"]
    return [a["role"], _index(a["degree"]), _p(a["degree"] and a["degree"]["p_holm"]), str(a["dead"]["count"]),
            f"{flags['count']} ({flags['heavy']} heavy)"]


def degree_table(lin: dict) -> list[str]:
    """Per tensor: each axis's index of dispersion [null 95%], Holm p, dead and flagged units; the code chosen."""
    codec = {r["name"]: r for r in (lin.get("codec") or {}).get("tensors", [])}
    lines = ["| tensor | rows are | row index [null 95%] | p (Holm) | dead rows | flagged rows | columns are | "
             "column index [null 95%] | p (Holm) | dead columns | flagged columns | code (gain) |",
             "|" + "---|" * 12]
    for t in lin["tensors"]:
        c = codec.get(t["name"])
        code = f"{c['context']} ({100 * c['gain']:.1f}%)" if c else "—"
        lines.append("| " + " | ".join([short(t["name"]), *_axis_cells(t["rows"]), *_axis_cells(t["cols"]), code]) + " |")
    return lines


def _tokens(tok: list[dict]) -> str:
    return ", ".join(f"{t['token']} ({t['alive']}, {t['frequency']:,}×)" for t in tok[:6])


def _mean(x) -> str:
    return "—" if x is None else f"{x:.1f}"


def token_lines(lin: dict) -> list[str]:
    lines = []
    for k, t in lin.get("tokens", {}).items():
        if "all" not in t:
            continue
        lines.append(f"- **Tokens, {k} rows** (null 95% range {t['null_range'][0]}–{t['null_range'][1]} alive per token): "
                     f"Spearman of alive count with frequency in the large split {_ci(t['all'])}; over the "
                     f"{t['ids_seen']:,} ids that occur {_ci(t['seen'])}. {t['ids_unseen']:,} ids never occur: mean alive "
                     f"{_mean(t['mean_alive_unseen'])} against {_mean(t['mean_alive_seen'])} for those that do, and "
                     f"Spearman with the id among them {_ci(t['unseen_by_id'])} (tied weights pruned lowest index first "
                     f"leave a rising ρ; docs/method.md §8). {t['dead']} tokens have no wiring left, {t['dead_unseen']} of "
                     f"them never occur. Most wired (alive, occurrences): {_tokens(t['most'])}; least: {_tokens(t['least'])}.")
    return lines


def head_lines(lin: dict) -> list[str]:
    heads = lin.get("heads", [])
    if not heads:
        return []
    flagged = sorted((h for h in heads if h["flag"]), key=lambda h: h["p_holm"])
    listed = ", ".join(f"layer {h['layer']} head {h['head']} {h['part']} ×{h['ratio']:.2f}" for h in flagged[:8])
    signs = sum(1 for h in heads if h.get("sign_p_holm") is not None and h["sign_p_holm"] < 0.05)
    return [f"- **Heads:** {len(flagged)} of {len(heads)} q/k/v/o blocks have an alive count outside the null (exact "
            f"hypergeometric, Holm over all blocks){': ' + listed if listed else ''}; {signs} have a sign balance "
            "outside their tensor's."]


def sign_lines(lin: dict) -> list[str]:
    coherent = [(t, a) for t in lin["tensors"] for a in ("rows", "cols")
                if t[a]["sign_coherence"] and t[a]["sign_coherence"]["over_dispersed"]]
    listed = ", ".join(f"{short(t['name'])} {a} [{t[a]['role']}] {t[a]['sign_coherence']['index']:.2f}" for t, a in coherent)
    balances = [t["sign_balance"] for t in lin["tensors"] if t["sign_balance"] is not None]
    off = sum(1 for t in lin["tensors"] if t["sign_p"] is not None and t["sign_p"] < 0.05 / len(lin["tensors"]))
    return [f"- **Signs:** tensor sign balances {min(balances):.3f}–{max(balances):.3f} ({off} off 0.5 at Bonferroni 0.05); "
            f"sign coherence (a unit's survivors sharing a sign more than chance; index of dispersion of positive counts, "
            f"null 1) in {len(coherent)} of {2 * len(lin['tensors'])} axes{': ' + listed if listed else ''}."]


def history_lines(lin: dict) -> list[str]:
    out = []
    steps = lin.get("generations", [])
    if steps:
        kept = "; ".join(f"{s['generation']}: {s['same_sign_fraction']:.3f}" for s in steps)
        were = all(s["were_alive"] == s["alive"] for s in steps)
        out.append(f"- **Across generations:** {'every' if were else 'NOT every'} survivor of generation k was a survivor "
                   f"of generation k−1 (by construction); fraction of survivors keeping their sign, by generation: {kept} "
                   "(no test: each generation restarts from its survivors' signs, so only training flips one).")
    mag = lin.get("magnitudes", {})
    if "missing" in mag:
        out.append(f"- **Generation 0 magnitudes:** not computed: {mag['missing']}.")
    elif mag:
        out.append(f"- **Generation 0 magnitudes:** of the {mag['final_survivors']:,} final survivors, "
                   f"{mag['in_top_fraction']:.3f} were among the largest as many |w| of generation 0's survivors "
                   f"(chance {mag['chance']:.3f}); their mean percentile there {mag['mean_percentile']:.3f} (null 0.5); "
                   f"{mag['sign_agree'] / max(1, mag['final_survivors']):.3f} keep the sign of the trained weight "
                   "(generation 1 starts from it); "
                   f"generation 0 pruned exactly its smallest |w| ({mag['construction_violations']} exceptions).")
    return out


def codec_lines(lin: dict) -> list[str]:
    c = lin.get("codec")
    if not c:
        return []
    return [f"- **Codec:** the structured code chose per-row or per-column rates for {c['structured']} of {c['n']} tensors; "
            f"{c['structured_over_dispersed']} of them on an over-dispersed axis; {c['over_dispersed_iid']} tensors have an "
            f"over-dispersed axis whose rates do not pay for their side information (break-even index ≈ 2 ln(length + 1)). "
            f"The G statistic predicts the codec's choice in {c['agree']} of {c['n']}; Spearman of gain with the larger "
            f"index {_ci(c['gain_vs_index'])}."]


def _symmetry_cells(sym: dict | None, shared: int, agree: float | None) -> list[str]:
    if sym is None:
        return ["—", "—"]
    lo, hi = sym["shared_range"]
    return [f"{shared:,} vs {sym['shared_mean']:,.0f} [{lo:,.0f}, {hi:,.0f}] (p {_p(sym['p_more'])})",
            f"{agree or 0:.3f} vs {sym['agree_mean']:.3f} [{sym['agree_range'][0]:.3f}, {sym['agree_range'][1]:.3f}] "
            f"(p {_p(sym['agree_p'])})"]


def _rho(axis: dict) -> str:
    r = axis["profile"]
    note = {"fixed": "", "heads": " (part and dimension shared, heads not)"}.get(axis["identity"], " (no identity)")
    return "—" if r is None else f"{r['rho']:.2f} [{r['ci'][0]:.2f}, {r['ci'][1]:.2f}]{note}"


def _pair_head(pair: dict) -> str:
    sym = pair["symmetry"]
    text = (f"Shared survivors {pair['shared']:,}: uniform chance {pair['chance_shared']:,.0f} "
            f"(×{pair['shared_over_chance']:.3f})")
    if sym:
        text += (f", symmetry null {sym['shared_mean']:,.0f} [{sym['shared_range'][0]:,.0f}, {sym['shared_range'][1]:,.0f}] "
                 f"(p {_p(sym['p_more'])})")
    text += (f"; Jaccard {pair['jaccard']:.4f}. Tensors above chance (Bonferroni 0.05 over {pair['bonferroni']}): "
             f"{pair['over_uniform']} against uniform placement, {pair['over_symmetry']} against the symmetry null. "
             f"Sign agreement of shared survivors {pair['sign_agree_fraction']:.4f} (null {pair['sign_null']:.4f} from each "
             f"lineage's own sign balance per tensor, p {_p(pair['sign_p'])}")
    if sym:
        text += f"; symmetry null {sym['agree_mean']:.3f} [{sym['agree_range'][0]:.3f}, {sym['agree_range'][1]:.3f}], p {_p(sym['agree_p'])}"
    return text + ")."


def pair_lines(pair: dict) -> list[str]:
    lines = [f"#### {pair['a']} vs {pair['b']}", "", _pair_head(pair), "",
             "| tensor | Jaccard | uniform chance [95%] | p | shared vs symmetry null [95%] (p) | sign agreement vs null "
             "from balances (p) | "
             "sign agreement vs symmetry null [95%] (p) | row-degree ρ [95%] | column-degree ρ [95%] |", "|" + "---|" * 9]
    for r in pair["tensors"]:
        shared, agree = _symmetry_cells(r["symmetry"], r["shared"], r["signs"]["fraction"])
        lines.append("| " + " | ".join([
            short(r["name"]), f"{r['jaccard']:.4f}",
            f"{r['chance_jaccard']:.4f} [{r['null_jaccard'][0]:.4f}, {r['null_jaccard'][1]:.4f}]", _p(r["p_more"]), shared,
            f"{r['signs']['fraction'] or 0:.3f} vs {r['signs']['null']:.3f} ({_p(r['signs']['p'])})", agree,
            _rho(r["rows"]), _rho(r["cols"])]) + " |")
    return lines + [""]


def anatomy_markdown(result: dict, folder: str) -> list[str]:
    """The report section for an anatomy result whose files are in ``folder`` (relative to report.md)."""
    lines = ["## Anatomy of the connectome", "",
             f"Generation {result['generation']}'s connectome of every lineage against the random arm's construction "
             "(per tensor the same alive count placed uniformly, signs fair coins). Unit counts are exact hypergeometric; "
             "dispersion is Pearson's χ² over its degrees of freedom (1 under the null; χ² p, or "
             f"{result['draws']} seeded null draws where cells are small); flags at α = {result['alpha']} after Holm "
             "within each family (docs/method.md §8). Residual channels, MLP units and heads have no identity across "
             "lineages (relabelling them leaves the model's function unchanged); tokens do, and so do a q/k/v row's part "
             "and dimension (RoPE).", ""]
    lines += [f"> {n}" for n in result.get("notes", [])]
    for label, lin in result["lineages"].items():
        lines += [f"### {label.capitalize()}: degrees", "", *degree_table(lin), "", *token_lines(lin), *head_lines(lin),
                  *sign_lines(lin), *history_lines(lin), *codec_lines(lin), ""]
    if result["pairs"]:
        lines += ["### Across lineages", "", "Two nulls. Uniform: one lineage's survivors placed uniformly (exact "
                  "hypergeometric p of at least this overlap); shared signs independent, each lineage's at its own sign "
                  "balance in the tensor (agreement p_a p_b + (1 − p_a)(1 − p_b), exact binomial). Symmetry: the second lineage relabelled at "
                  f"random within the model's symmetries ({result['draws']} draws; residual channels permuted and "
                  "sign-flipped, MLP units and heads permuted, tokens fixed), which keeps each lineage's own structure "
                  "and asks whether they share wiring unit for unit.", ""]
        for pair in result["pairs"]:
            lines += pair_lines(pair)
    return lines + embed_lines(result.get("figures", []), ANATOMY, folder)


def report_section(run_dir: Path, report_dir: Path) -> list[str]:
    """The report's Anatomy section: the files in report/anatomy/ when current; computed here when absent and
    the model is small (CPU presets); otherwise, or when a file it needs is damaged, a line saying so."""
    run = AnatomyTarget.open(run_dir)
    if not all(ev.layout.connectome.exists() for ev in run.lineages()):
        return []
    out = run.default_out()
    head = ["## Anatomy of the connectome", ""]
    try:
        result = current_anatomy(run, out)
        if result is None:
            numel = _prunable_weights(run)
            if numel > REPORT_LIMIT:
                return [*head, f"Not computed with the report ({numel:,} weights): run `connectomes anatomy {run_dir}` "
                        "and the report again.", ""]
            result, _ = write_anatomy(run, out, progress=False)
    except UserError as e:
        return [*head, f"Not computed: {e}", ""]
    return anatomy_markdown(result, out.relative_to(report_dir).as_posix())


def _prunable_weights(run: AnatomyTarget) -> int:
    """Weights the anatomy reads: every prunable matrix of every lineage."""
    with torch.device("meta"):
        return sum(p.numel() for ev in run.lineages() for p in GPT(ev.gcfg).parameters() if p.dim() == 2)


def summary_lines(result: dict, path: Path) -> list[str]:
    """What `connectomes anatomy` prints: per lineage the headline of each section, per pair the overlap."""
    lines = [f"anatomy of generation {result['generation']} -> {path}"]
    for label, lin in result["lineages"].items():
        axes = [(t, a) for t in lin["tensors"] for a in ("rows", "cols") if t[a]["degree"]]
        over = sum(1 for t, a in axes if t[a]["degree"]["over_dispersed"])
        flags = sum(t[a]["degree_flags"]["count"] for t in lin["tensors"] for a in ("rows", "cols"))
        dead = sum(t[a]["dead"]["count"] for t in lin["tensors"] for a in ("rows", "cols"))
        heads = sum(h["flag"] for h in lin["heads"])
        lines.append(f"{label}: {over} of {len(axes)} tensor axes over-dispersed (Holm {result['alpha']}); {flags} rows/columns "
                     f"flagged, {dead} with no wiring; {heads} of {len(lin['heads'])} head blocks outside the null")
        for k, t in lin.get("tokens", {}).items():
            if t.get("all"):
                lines.append(f"  {k} tokens: Spearman with frequency {_ci(t['all'])}")
        mag = lin.get("magnitudes", {})
        if mag.get("in_top_fraction") is not None:
            lines.append(f"  generation 0: {mag['in_top_fraction']:.3f} of final survivors among the largest |w| (chance {mag['chance']:.3f})")
    for p in result["pairs"]:
        sym = p["symmetry"] or {}
        lines.append(f"{p['a']} vs {p['b']}: Jaccard {p['jaccard']:.4f}, shared {p['shared']:,} vs uniform chance "
                     f"{p['chance_shared']:,.0f} (×{p['shared_over_chance']:.3f}) and symmetry null "
                     f"{sym.get('shared_mean', float('nan')):,.0f}; sign agreement {p['sign_agree_fraction']:.3f} "
                     f"(symmetry null {sym.get('agree_mean', float('nan')):.3f}, p {_p(sym.get('agree_p'))})")
    return lines
