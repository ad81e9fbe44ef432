"""The ``data`` config section: where text comes from, how it is tokenised and split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from ..core.config import SECTION, Bool, PosInt, Seed, comma_list, doc, later_field


# the settings that choose among prepared corpora (pipeline.corpora); none of them shapes a prepared folder
MULTI_CORPUS_KEYS = ("name", "corpora", "val_corpora", "foreign_bpe")


@dataclass
class DataConfig:
    """Where text comes from, how it is tokenised and how it is split (docs/method.md §2)."""

    __pydantic_config__ = SECTION
    source: Annotated[Literal["local", "fineweb", "synthetic"], doc("where the text comes from")] = "local"
    path: Annotated[str, doc("local: folder of .txt/.jsonl/.jsonl.gz (relative paths also tried inside "
                             "$CONNECTOMES_DATA); empty = $CONNECTOMES_DATA/corpus")] = ""
    tokenizer: Annotated[str, doc("gpt2 | bytes | bpe-N")] = "bytes"
    gpt2_bpe_file: Annotated[str, doc("local gpt2.tiktoken; empty = $CONNECTOMES_DATA/gpt2/gpt2.tiktoken if present")] = ""
    large_tokens: Annotated[PosInt, doc("tokens in the outer-loop split L (paper: 4B)")] = 2_000_000
    small_tokens: Annotated[PosInt, doc("tokens in the inner-loop split S (paper: 100M)")] = 200_000
    val_tokens: Annotated[PosInt, doc("tokens in the validation split")] = 100_000
    seed: Annotated[Seed, doc("document shuffle seed for the split")] = 0
    shard_tokens: Annotated[PosInt, doc("tokens per shard file")] = 10_000_000
    fineweb_name: Annotated[str, doc("Hugging Face dataset name for source=fineweb (or a local dataset folder)")] = "HuggingFaceFW/fineweb"
    fineweb_subset: Annotated[str, doc("FineWeb configuration name")] = "sample-10BT"
    fineweb_split: Annotated[str, doc("FineWeb split")] = "train"
    synthetic_fallback: Annotated[Bool, doc("demo: generate text when the data folder is absent")] = True
    skip_bad_files: Annotated[Bool, doc("local corpus: leave out files that are not UTF-8 text (counted in meta.json) instead of refusing them")] = False
    dir: Annotated[str, doc("prepared data folder; empty = <run>/data")] = ""
    workers: Annotated[PosInt, doc("tokenising processes for prepare; the output is byte-identical for any count")] = 1
    # other corpora (issue 31): each is prepared into a folder of its own with this section's tokenizer, budgets and
    # seed; the evolve corpus of a lineage (evolve.corpus_by_seed) and the develop corpus of a unit (develop.corpora)
    # are chosen among them and the run's own (data.name)
    name: Annotated[str, doc("the name of the corpus data.source/data.path give (how develop.corpora, "
                             "evolve.corpus_by_seed and results call it); empty = the last part of data.path, "
                             "or the source (fineweb, synthetic)")] = later_field("")
    corpora: Annotated[dict[str, str], doc("other corpora by name: name -> folder of .txt/.jsonl/.jsonl.gz (like "
                                           "data.path); each gets its own val/small/large splits with this "
                                           "section's budgets and tokenizer; no input file may be in two corpora")] = \
        later_field(default_factory=dict)
    val_corpora: Annotated[comma_list(str), doc("corpora whose val split every unit is also scored on, beside its "
                                                "develop corpus's (val_loss by_corpus), e.g. the evolve corpus: what "
                                                "development costs on the old world")] = later_field(default_factory=list)
    foreign_bpe: Annotated[Bool, doc("with tokenizer bpe-N and data.corpora: encode the other corpora with the "
                                     "tokenizer trained on the run's own corpus (refused otherwise: its merges fit "
                                     "that corpus, so another one is tokenised worse than by its own)")] = later_field(False)
