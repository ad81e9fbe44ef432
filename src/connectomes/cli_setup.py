"""The verbs of a first day: `data` (fetch and list the data sets, from the packaged manifest) and `config`
(list and print the packaged study presets). Kept apart from cli.py, whose verbs run studies."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .core.errors import UserError
from .core.inputs import default_data_root, user_data_dir
from .core.presets import preset_names, preset_path
from .data.catalog import load_manifest, select, set_state
from .data.fetch import fetch

FMT = argparse.RawDescriptionHelpFormatter


def data_root(arg: str | None) -> tuple[Path, str]:
    """(the data folder, why that one): --root, else the folder every verb reads (default_data_root), else
    the user cache folder a first fetch creates."""
    if arg:
        return Path(arg), "--root"
    if os.environ.get("CONNECTOMES_DATA"):
        return Path(os.environ["CONNECTOMES_DATA"]), "$CONNECTOMES_DATA"
    found = default_data_root()
    if found is not None:
        return found, "found beside the working folder" if found != user_data_dir() else "the user cache folder"
    return user_data_dir(), "the user cache folder; $CONNECTOMES_DATA overrides"


def cmd_data_list(args) -> int:
    root, why = data_root(args.root)
    manifest = load_manifest()
    print(f"data folder: {root} ({why})")
    w = max(len(n) for n in manifest)
    print(f"{'set':<{w}}  {'state':<14} {'files':>7} {'MB':>7}  {'licence':<20} source")
    for ds in select(manifest, args.names):
        st = set_state(ds, root, verify=args.verify)
        licence = ds.licence.split(" (")[0].split(";")[0]  # the short name; `data info` gives the rest
        print(f"{ds.name:<{w}}  {st.word(len(ds.files)):<14} {len(ds.files):>7} {ds.size / 1e6:>7.1f}  {licence:<20} {ds.homepage}")
    print("fetch what is missing with `connectomes data fetch [NAME...]`; `connectomes data info NAME` gives the "
          "citation, licence and source of one set" + ("" if args.verify else "; --verify checks every sha256"))
    return 0


def cmd_data_info(args) -> int:
    root, _ = data_root(args.root)
    for ds in select(load_manifest(), args.names):
        st = set_state(ds, root)
        print(f"{ds.name}: {ds.what}\n  used by:  {ds.used_by}\n  licence:  {ds.licence}\n  cite:     {ds.citation}\n"
              f"  homepage: {ds.homepage}\n  source:   {ds.source}" + (f"\n  note:     {ds.note}" if ds.note else "") +
              f"\n  folder:   {ds.folder(root)} ({st.word(len(ds.files))}, {len(ds.files)} files, {ds.size / 1e6:.1f} MB)")
    return 0


def cmd_data_fetch(args) -> int:
    root, why = data_root(args.root)
    sets = select(load_manifest(), args.names)
    print(f"data folder: {root} ({why})")
    reports = fetch(sets, root, mirror=args.mirror)
    got = sum(r.fetched for r in reports)
    kept = sum(r.present for r in reports)
    print(f"fetched {got} files ({sum(r.bytes for r in reports) / 1e6:,.1f} MB downloaded), {kept} already present; "
          f"every file matches its pinned sha256 in {root}")
    if why.startswith("the user cache") and not os.environ.get("CONNECTOMES_DATA"):
        print("every verb finds this folder by itself; set CONNECTOMES_DATA to use another")
    return 0


def cmd_config_list(args) -> int:
    for name in preset_names():
        first = next((ln[1:].strip() for ln in preset_path(name).read_text().splitlines() if ln.startswith("#")), "")
        print(f"{name:<16} {first}")
    print("`connectomes config show NAME > my.yaml` starts a config from one; `connectomes study NAME` runs it")
    return 0


def cmd_config_show(args) -> int:
    p = preset_path(args.name)
    if p is None:
        raise UserError(f"no packaged config {args.name!r}; the presets are {', '.join(preset_names())}")
    print(p.read_text(), end="")
    return 0


def add_setup_verbs(sub) -> None:
    sp = sub.add_parser("data", help="fetch the evaluation sets and corpus from their sources, and list what is present",
                        description="The data sets of the packaged manifest: each from its pinned public source, every "
                        "file checked against its sha256 (docs/data.md).", formatter_class=FMT)
    dsub = sp.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    root_help = "the data folder (default $CONNECTOMES_DATA, else the user cache folder ~/.cache/connectomes/data)"
    p = dsub.add_parser("list", help="every set: present, missing or differing, its size, licence and source")
    p.add_argument("names", nargs="*", metavar="NAME", help="sets to list (default all; corpus = corpus/*)")
    p.add_argument("--root", help=root_help)
    p.add_argument("--verify", action="store_true", help="check every file's sha256, not only its size")
    p.set_defaults(fn=cmd_data_list)
    p = dsub.add_parser("info", help="what a set is, who made it, its licence and how to cite it")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--root", help=root_help)
    p.set_defaults(fn=cmd_data_info)
    p = dsub.add_parser("fetch", help="download the sets (default all) from their sources; resumable, checked")
    p.add_argument("names", nargs="*", metavar="NAME", help="sets to fetch (default all; corpus = corpus/*)")
    p.add_argument("--root", help=root_help)
    p.add_argument("--mirror", metavar="DIR_OR_URL", help="fetch from a copy of a data folder (a path, file:// or "
                   "http(s):// URL laid out as the toolkit reads it) instead of the sources; still checked file by file")
    p.set_defaults(fn=cmd_data_fetch)

    sp = sub.add_parser("config", help="the packaged study presets: list them, print one to start a YAML from",
                        description="The study presets that ship with the package (demo, replicate-cpu, paper-124m, ...); "
                        "`connectomes study NAME` runs one.", formatter_class=FMT)
    csub = sp.add_subparsers(dest="config_verb", required=True, metavar="ACTION")
    csub.add_parser("list", help="every preset and its first comment line").set_defaults(fn=cmd_config_list)
    p = csub.add_parser("show", help="print a preset's YAML (redirect it to a file to start your own)")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(fn=cmd_config_show)
