"""`recsys rules set --store DIR FILE` (a new version holding FILE as rules.toml, published) and
`recsys rules show --store DIR [--version ID]` (the serving version's rules, as TOML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jobs.cli.stores import STORE_HELP, store_location
from jobs.errors import UsageError


def register(subparsers: argparse._SubParsersAction) -> None:
    rules = subparsers.add_parser("rules", help="business rules (boost, bury, block) of the serving version")
    sub = rules.add_subparsers(dest="rules_command", required=True)
    set_ = sub.add_parser("set", help="publish a new version holding FILE as its rules.toml")
    set_.add_argument("file", type=Path, metavar="FILE", help="a rules.toml ([[boost]], [[bury]], [[block]])")
    set_.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    set_.add_argument("--no-publish", action="store_true", help="write the version but leave CURRENT alone")
    set_.set_defaults(func=run_set)
    show = sub.add_parser("show", help="print a version's rules.toml")
    show.add_argument("--store", type=store_location, required=True, help=STORE_HELP)
    show.add_argument("--version", default=None, help="an index version (default: CURRENT)")
    show.set_defaults(func=run_show)


def run_set(args: argparse.Namespace) -> int:
    from index.remote import synced_store
    from index.store import IndexStore
    from recsys.rules import load_rules, write_rules_version

    with synced_store(args.store) as root:  # a remote store: via its mirror, uploaded afterwards
        version = write_rules_version(root, args.file, publish=not args.no_publish)
        count = len(load_rules(IndexStore(root).version_dir(version)))
    print(f"{version}: {count} rules{'' if args.no_publish else ', published'}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from index.errors import IndexLoadError
    from index.remote import RemoteError, local_copy
    from index.store import IndexStore
    from recsys.rules import RULES_FILE, read_rules_text

    try:
        store = IndexStore(local_copy(args.store, (args.version,)))
    except RemoteError:
        raise  # the object store failed: exit 1
    except IndexLoadError as exc:  # a store on object storage without that version (as below)
        raise UsageError(f"--store {args.store}: {exc}") from None
    version = args.version or store.current_version()
    if version is None:
        raise UsageError(f"--store {args.store}: no published version")
    path = store.version_dir(version) / RULES_FILE
    if not (store.version_dir(version)).is_dir():
        raise UsageError(f"--version {version}: no such version in {args.store}")
    if not path.is_file():
        print(f"# version {version} has no rules")
        return 0
    text = read_rules_text(path)  # InputError naming it when it is not text: exit 2
    print(f"# version {version}: {RULES_FILE}")
    print(text, end="")
    return 0
