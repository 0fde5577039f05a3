"""Business rules of a version (DESIGN.md): `rules.toml` beside its index, read once per load.

    [[boost]]                          # matching items' scores times factor
    name = "house brand"               # optional; "boost 1", "bury 2", ... otherwise
    filter = {brand = "acme"}
    factor = 1.5
    [[bury]]                           # matching items rank after everything else
    filter = {in_stock = false}
    [[block]]                          # never shown
    items = ["sku-17"]                 # and/or filter = {...}

Filters are those of the API (recsys.filters). `VersionRules` turns the rules into masks over the
index rows; `recsys.answers` applies them to every answer. `write_rules_version` makes the new
version that holds a rules file (the base's other files hard-linked) and publishes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

from recsys.errors import InputError
from recsys.filters import Filter, RowFilters, parse_filter

log = logging.getLogger(__name__)

RULES_FILE = "rules.toml"
KINDS = ("boost", "bury", "block")


@dataclass(frozen=True)
class Rule:
    kind: str
    name: str
    filter: Filter | None
    items: tuple[str, ...]
    factor: float = 1.0


def parse_rules(text: str, source: str = RULES_FILE) -> list[Rule]:
    """Rules from TOML text; InputError naming `source`, the rule and the field on anything wrong."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{source}: not valid TOML ({exc})") from None
    unknown = sorted(set(data) - set(KINDS))
    if unknown:
        raise InputError(f"{source}: unknown section {unknown[0]!r} "
                         "(expected [[boost]], [[bury]] or [[block]])")
    rules = []
    for kind in KINDS:
        entries = data.get(kind, [])
        if not isinstance(entries, list):
            raise InputError(f"{source}: {kind} must be an array of tables ([[{kind}]])")
        for n, entry in enumerate(entries, 1):
            rules.append(_rule(kind, n, entry, source))
    return rules


def _rule(kind: str, n: int, entry: Any, source: str) -> Rule:
    where = f"{source}: [[{kind}]] number {n}"
    if not isinstance(entry, dict):
        raise InputError(f"{where}: expected a table")
    allowed = {"name", "filter", "items"} | ({"factor"} if kind == "boost" else set())
    extra = sorted(set(entry) - allowed)
    if extra:
        raise InputError(f"{where}: unknown field {extra[0]!r} (expected {', '.join(sorted(allowed))})")
    name = entry.get("name", f"{kind} {n}")
    if not isinstance(name, str):
        raise InputError(f"{where}: name must be a string, not {name!r}")
    try:
        flt = parse_filter(entry["filter"]) if "filter" in entry else None
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    items = entry.get("items", [])
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InputError(f"{where}: items must be a list of item id strings")
    if flt is None and not items:
        raise InputError(f"{where}: give a filter or items")
    factor = entry.get("factor", 1.0)
    if kind == "boost" and ("factor" not in entry or isinstance(factor, bool)
                            or not isinstance(factor, int | float) or not 0 < factor < 1e6):
        raise InputError(f"{where}: factor must be a positive number")
    return Rule(kind, name, flt, tuple(items), float(factor))


class VersionRules:
    """A version's rules as masks over its index rows."""

    def __init__(self, rules: list[Rule], filters: RowFilters, row_of: dict[str, int],
                 source: str = RULES_FILE) -> None:
        """InputError naming `source` and the rule when a filter does not fit the catalogue."""
        self.rules = rules
        n = len(row_of)
        self.blocked: np.ndarray | None = None
        self.boosts: list[tuple[str, np.ndarray, float]] = []
        self.buries: list[tuple[str, np.ndarray]] = []
        for rule in rules:
            try:
                mask = filters.mask(rule.filter).copy() if rule.filter is not None else np.zeros(n, bool)
            except InputError as exc:
                raise InputError(f"{source}: [[{rule.kind}]] rule {rule.name!r}: {exc}") from None
            mask[[row_of[i] for i in rule.items if i in row_of]] = True
            if rule.kind == "block":
                self.blocked = mask if self.blocked is None else self.blocked | mask
            elif rule.kind == "boost":
                self.boosts.append((rule.name, mask, rule.factor))
            else:
                self.buries.append((rule.name, mask))
        self.shown = None if self.blocked is None else ~self.blocked

    @property
    def reorders(self) -> bool:
        return bool(self.boosts or self.buries)

    def __bool__(self) -> bool:
        return bool(self.rules)


    @classmethod
    def load(cls, version_dir: str | Path, filters: RowFilters, row_of: dict[str, int]) -> VersionRules:
        """The version's rules over its rows; InputError naming its rules.toml when they are broken."""
        return cls(load_rules(version_dir), filters, row_of, str(Path(version_dir) / RULES_FILE))


def read_rules_text(path: Path) -> str:
    """The text of a rules file; InputError naming it when it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read the rules file ({exc})") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from None


def load_rules(version_dir: str | Path) -> list[Rule]:
    """The version's rules; none when it holds no rules.toml."""
    path = Path(version_dir) / RULES_FILE
    if not path.is_file():
        return []
    return parse_rules(read_rules_text(path), str(path))


def write_rules_version(store_dir: str | Path, rules_file: str | Path, publish: bool = True) -> str:
    """A new version over the serving one holding `rules_file` as rules.toml (every other file of
    the base hard-linked), checked against the catalogue; published unless told not to."""
    from index.store import IndexStore, load_version

    store = IndexStore(store_dir)
    base = store.current_version()
    if base is None:
        raise InputError(f"{store_dir}: no published version to add rules to")
    path = Path(rules_file)
    text = read_rules_text(path)
    rules = parse_rules(text, str(path))
    items = load_version(store_dir, base).items
    VersionRules(rules, RowFilters(items), {str(i): n for n, i in enumerate(items["item_id"])}, str(path))
    with store.write_version(base=base, without=(RULES_FILE,)) as writer:
        writer.file(RULES_FILE).write_text(text, encoding="utf-8")
        writer.commit({"rules": {"count": len(rules), "source": str(path)}})
    if publish:
        store.publish(writer.version)
    log.info("version %s: %d rules over base %s", writer.version, len(rules), base)
    return writer.version
