"""The one owner of the answer: which items may be shown for a query, and in what order.

    answers = Answers.load(store_dir, version=None)         # CURRENT by default
    answers.similar(item_id, k, mode, constraints)           -> Answer
    answers.stored_similar(item_id, k, mode)                 -> Answer | None  (lookup only: the fast path)
    answers.similar_batch(item_ids, k, mode, constraints)    -> [Answer, ...]  (export: batched search)
    answers.similar_to_vectors(unit_vectors, k, constraints) -> [Answer, ...]
    answers.recommend(user_id, k, constraints)               -> Answer
    answers.session(positive, negative, k, mode, constraints) -> Answer   (anonymous sessions)

Everything that decides what comes back lives here: candidate lookup (the version's stored
neighbour lists, a live index search, the behaviour and hybrid models), exclusions, stock, filters
(`Constraints`, applied as one boolean mask over the index's rows: category, `filter`, and the
version's blocked items), ordering, then `_arrange`: the version's boost and bury rules
(recsys/rules.py), `group_by` and `diversity`. An `Answer` holds (item_id, score) rows, per-row
extra fields and each row's reasons (`Answer.why`: each source's part of the score, the rule that
moved it), never catalogue metadata: the API, the command line and export join that once, at
their edge (recsys/api/serving.py, jobs/cli/query.py, jobs/cli/export.py).

The rules:
- Visual answers are pure image similarity (cosine scores; out-of-stock items included unless
  `Constraints.in_stock`). Behaviour and hybrid answers, and recommendations, hold only catalogue
  items in stock (where the catalogue has an `in_stock` column).
- Hybrid answers for an item without behaviour are its visual neighbours; hybrid lists that run
  dry under the constraints are topped up with visual neighbours, ranked after (score x 1e-3).
- A version without behaviour data answers behaviour and hybrid queries visually and says so in
  `Answer.note`; an unknown user gets the popular items.
- The query item is never in its own answer; `exclude` ids never are; blocked items never are.
- A filter never makes an answer short: it holds min(k, matching showable items) rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import scipy.sparse as sp

from index.lru import MISSING, LockedLRU
from recsys.errors import InputError, UnknownItem
from recsys.filters import MASK_CACHE, Filter, RowFilters, parse_filter
from recsys.rules import VersionRules

if TYPE_CHECKING:
    from index.loaded import LoadedIndex
    from recsys.behaviour_store import Behaviour

log = logging.getLogger(__name__)

MODES = ("hybrid", "visual", "behaviour")
DEFAULT_MODE = "hybrid"  # the API's and export's default; `recsys similar` defaults to visual
K_MAX = 1000  # DESIGN.md: k from 1 to 1000, on every route and command
CANDIDATES = 200  # hybrid and behaviour lists are cut to this many before the constraints
TOP_UP_SCALE = 1e-3  # visual neighbours that top up a hybrid list rank after its blended part
NO_BEHAVIOUR = "no behaviour data in this version: answered by image similarity"
RAW_VECTOR = "a raw vector is answered by image similarity"
COLD_SESSION = "no behaviour data for these items: answered by image similarity"
BECAUSE_HISTORY = 20  # a user's heaviest history items looked at for `because`
POPULARITY_FLOOR = 1e-5  # a history item scoring a result only by the popularity tie-break led to nothing
TIE_BREAK_SLACK = 1e-4  # a hybrid score's unexplained rest up to this is the popularity tie-break
NEGATIVE_WEIGHT = 0.5  # a session's negatives count this much against its positives
RULE_CANDIDATES = 200  # under boost and bury rules, answers are chosen from at least k + this many


@dataclass(frozen=True)
class Constraints:
    """What every result must satisfy besides its mode. Hashable (part of the API's cache keys).

    A new kind of constraint (business rules) is a field here, applied in `Answers._allowed` (a
    mask over the index's rows) or `Answers._arrange` (over a ranked candidate list); every route
    and command then honours it.
    """

    exclude: tuple[str, ...] = ()  # sorted, unique (use `Constraints.of`)
    category: str | None = None
    in_stock: bool = False  # visual answers too hold only items in stock
    filter: Filter | None = None  # recsys.filters: catalogue conditions, all must hold
    group_by: str | None = None  # at most one result per value of this catalogue column
    diversity: float = 0.0  # 0..1: maximal-marginal-relevance trade-off on the visual vectors

    @classmethod
    def of(cls, exclude: Iterable[str] = (), category: str | None = None, in_stock: bool = False,
           filter: Filter | str | dict[str, Any] | None = None,  # shadows the builtin: the API's name
           group_by: str | None = None, diversity: float = 0.0) -> Constraints:
        """Raises InputError for a malformed filter or a diversity outside 0..1."""
        if not isinstance(filter, tuple):
            filter = parse_filter(filter)
        if not 0.0 <= diversity <= 1.0:
            raise InputError(f"diversity must be from 0 to 1, got {diversity}")
        return cls(tuple(sorted(set(exclude))), category, in_stock, filter, group_by or None,
                   float(diversity))

    @property
    def arranges(self) -> bool:
        """Whether the ranked list is rearranged (grouped or diversified) after selection."""
        return self.group_by is not None or self.diversity > 0.0


NO_CONSTRAINTS = Constraints()


@dataclass(slots=True)
class Answer:
    """Ranked rows (item_id, score), best first; `extras[i]`: fields row i carries besides those;
    `sources[i]`: each source's part of row i's score (None: all of it from `mode`)."""

    rows: list[tuple[str, float]]
    mode: str = "visual"  # the mode that answered
    requested_mode: str = "visual"
    note: str | None = None  # why `mode` differs from `requested_mode`
    extras: list[dict[str, Any]] | None = field(default=None)
    sources: list[dict[str, float]] | None = field(default=None)
    rules: list[str | None] | None = field(default=None)  # the business rule that moved row i

    def ids(self) -> list[str]:
        return [item_id for item_id, _ in self.rows]

    def why(self, n: int) -> dict[str, Any]:
        """Row n's reasons: `{"sources": {source: part of the score}}` (6 decimals), and `"rule"`:
        the business rule that moved it."""
        if self.sources is None:
            why: dict[str, Any] = {"sources": {self.mode: round(self.rows[n][1], 6)}}
        else:
            why = {"sources": {name: round(part, 6) for name, part in self.sources[n].items()}}
        if self.rules is not None and self.rules[n] is not None:
            why["rule"] = self.rules[n]
        return why


# A ranked candidate row inside this module: (item_id, score, source), source being "visual",
# "behaviour" or "hybrid" (a hybrid score is split into its parts once the rows are final).
Row = tuple[str, float, str]


class Answers:
    """The answers of one store version: its loaded index and, where it has them, behaviour models."""

    def __init__(self, index: LoadedIndex, behaviour: Behaviour | None = None,
                 behaviour_error: str | None = None) -> None:
        self.index = index
        self.version = str(index.version)
        self.behaviour = behaviour
        self.behaviour_error = behaviour_error
        items = index.items
        self.item_ids: list[str] = index.item_ids  # in index row order (the index's, built once)
        self.row_of: dict[str, int] = index.row_of
        self._categories: np.ndarray | None = None  # each row's category as str: `_category_values`
        self._in_stock = (items["in_stock"].fillna(False).astype(bool).to_numpy()
                          if "in_stock" in items else None)
        self.filters = RowFilters(items)
        self.rules = VersionRules.load(index.path, self.filters, self.row_of)
        self._masks: LockedLRU[np.ndarray | None] = LockedLRU(MASK_CACHE)  # see `_allowed`
        self._groups: dict[str, np.ndarray] = {}
        if behaviour is not None:
            self.model = behaviour.model
            self.hybrid = behaviour.hybrid()
            # per position in the models' item space: its index row, -1 for items not in the catalogue
            self._model_rows = np.array([self.row_of.get(str(i), -1) for i in self.model.item_ids],
                                        dtype=np.int64)
            self._users = behaviour.interactions.user_index()

    @classmethod
    def load(cls, store_dir: str | Path, version: str | None = None, index: LoadedIndex | None = None,
             behaviour: Literal["optional", "required", "none"] = "optional") -> Answers:
        """The version's index (or the given loaded one) and its behaviour/ data.

        behaviour: "optional" (load it where the version has it, else record why not in
        `behaviour_error`), "required" (raise InputError without it) or "none" (do not load it).
        Raises IndexLoadError when the index version cannot be loaded, InputError naming the file
        when its behaviour/ folder or rules.toml is broken (a reload then keeps the old version)."""
        if index is None:
            from index.store import load_version

            index = load_version(store_dir, version)
        if behaviour == "none":
            return cls(index)
        from recsys.behaviour_store import NoBehaviour, load_behaviour

        try:
            return cls(index, load_behaviour(Path(index.path)))
        except NoBehaviour as exc:  # answered visually; a behaviour/ folder that is broken is an error
            if behaviour == "required":
                raise
            log.warning("version %s: no behaviour recommender (%s)", index.version, exc)
            return cls(index, None, f"no behaviour data for version {index.version}: {exc}")

    def __len__(self) -> int:
        return len(self.item_ids)

    def has_item(self, item_id: str) -> bool:
        return item_id in self.row_of

    def knows_user(self, user_id: str) -> bool:
        """Whether the behaviour data holds this user (an unknown one gets the popular items)."""
        return self.behaviour is not None and user_id in self._users

    def answering_mode(self, mode: str) -> tuple[str, str | None]:
        """The mode that will answer and, when it differs from the request, why."""
        if mode == "visual" or self.behaviour is not None:
            return mode, None
        return "visual", NO_BEHAVIOUR

    def check(self, constraints: Constraints) -> None:
        """InputError naming what this version's catalogue cannot honour: a filter or group_by
        column it lacks, a range over a column that holds no numbers."""
        self.filters.check(constraints.filter)
        if constraints.group_by is not None and constraints.group_by not in self.filters.columns:
            raise InputError(f"group_by: unknown column {constraints.group_by!r} (the catalogue has "
                             f"{', '.join(sorted(self.filters.columns))})")

    # -- similar items -------------------------------------------------------------------------
    def stored_similar(self, item_id: str, k: int, mode: str = DEFAULT_MODE) -> Answer | None:
        """The unconstrained answer when the stored neighbour lists hold it, else None (a live
        search is needed). Cheap enough for the event loop: the API's fast path."""
        used, note = self.answering_mode(mode)
        row = self.row_of.get(item_id)
        if used != "visual" or row is None or self.rules.reorders:
            return None
        rows = self.index.stored_neighbours(row, k, (), self.rules.shown)
        return None if rows is None else Answer(rows, used, mode, note)

    def similar(self, item_id: str, k: int = 10, mode: str = DEFAULT_MODE,
                constraints: Constraints = NO_CONSTRAINTS) -> Answer:
        """Items most like `item_id`; raises UnknownItem when neither the index nor the behaviour
        data knows it, InputError for a bad mode, k or constraint."""
        self._check(k, mode)
        self.check(constraints)
        used, note = self.answering_mode(mode)
        if used == "visual":
            if item_id not in self.row_of:
                raise UnknownItem(item_id)
            stock = constraints.in_stock
            rows, moved = self._arrange(lambda n: self._visual(item_id, n, constraints, stock), k,
                                        constraints)
        else:
            self._known(item_id)
            position = self._position(item_id)
            # the hybrid's parts, computed once: its candidates and their `why` both come from them
            parts = self.hybrid.item_parts(position) if used == "hybrid" and position is not None else None
            rows, moved = self._arrange(lambda n: self._blended(item_id, n, used, constraints, parts), k,
                                        constraints)
            return self._finish(self._answer(rows, used, mode, note, parts), moved)
        return self._finish(self._answer(rows, used, mode, note), moved)

    def similar_batch(self, item_ids: list[str], k: int = 10, mode: str = DEFAULT_MODE,
                      constraints: Constraints = NO_CONSTRAINTS) -> list[Answer]:
        """`similar` for many items at once (export). Visual answers under at most a mask (stock,
        category, filter, blocked items) come from the stored neighbour lists where they hold
        enough, the rest from one batched search (exact over the allowed rows, or FAISS with an ID
        selector); everything else, and any batched answer that came back short, item by item."""
        self._check(k, mode)
        self.check(constraints)
        used, note = self.answering_mode(mode)
        batched = used == "visual" and not constraints.exclude and not constraints.arranges \
            and not self.rules.reorders
        if not batched or not item_ids:
            return [self.similar(i, k, mode, constraints) for i in item_ids]
        rows = [self.row_of[i] if i in self.row_of else None for i in item_ids]
        if None in rows:
            raise UnknownItem(item_ids[rows.index(None)])
        allowed = self._allowed(constraints, constraints.in_stock)
        answers: list[Answer | None] = []
        for row in rows:
            found = self.index.stored_neighbours(row, k, (), allowed)
            answers.append(None if found is None else Answer(found, used, mode, note))
        missing = [n for n, answer in enumerate(answers) if answer is None]
        if missing:
            xq = np.asarray(self.index.vectors[[rows[n] for n in missing]], dtype=np.float32)
            found = self.index.nearest_many(xq, min(len(self), k + 1), allowed)
            showable = len(self) if allowed is None else int(allowed.sum())
            for n, pairs in zip(missing, found or [None] * len(missing)):
                own = allowed is None or bool(allowed[rows[n]])
                if pairs is not None:
                    pairs = [(i, s) for i, s in pairs if i != item_ids[n]][:k]
                if pairs is None or len(pairs) < min(k, showable - own):
                    answers[n] = self.similar(item_ids[n], k, mode, constraints)
                else:
                    answers[n] = Answer(pairs, used, mode, note)
        return answers  # type: ignore[return-value]

    def _known(self, item_id: str) -> None:
        if item_id not in self.row_of and self._position(item_id) is None:
            raise UnknownItem(item_id)

    def _position(self, item_id: str) -> int | None:
        try:
            return self.model.item_position(item_id)
        except UnknownItem:
            return None

    def _visual(self, item_id: str, k: int, constraints: Constraints, stock: bool,
                exclude: Iterable[str] | None = None) -> list[Row]:
        allowed = self._allowed(constraints, stock)
        exclude = constraints.exclude if exclude is None else tuple(exclude)
        k = min(k, len(self))
        row_of = self.row_of
        banned = [row_of[e] for e in exclude if e in row_of]
        found = self.index.similar_to_row(row_of[item_id], k, banned, allowed)
        return [(str(i), float(s), "visual") for i, s in found]

    def _blended(self, item_id: str, k: int, mode: str, constraints: Constraints,
                 parts: dict[str, Any] | None = None) -> list[Row]:
        """Behaviour or hybrid candidates for an item (`parts`: the hybrid's item_parts for it)."""
        in_index = item_id in self.row_of
        position = self._position(item_id)
        if mode == "hybrid" and position is None:  # no behaviour for this item yet
            return self._visual(item_id, k, constraints, stock=True)
        source = self.hybrid if mode == "hybrid" else self.model
        # A filter may leave few of the first candidates: then every candidate the source has is looked at.
        wide = constraints.filter is not None or constraints.arranges or bool(self.rules)
        wanted = len(self.model.item_ids) if wide else CANDIDATES
        if parts is not None:
            ids, scores = self.hybrid.similar_from_parts(position, parts, wanted)
        else:
            ids, scores = source.similar_items(item_id, wanted)
        banned = set(constraints.exclude) | {item_id}
        allowed = self._allowed(constraints, True)
        rows = [(i, s, mode) for i, s in self._select(ids, scores, k, banned, allowed)]
        if mode == "hybrid" and len(rows) < k and in_index:
            # the blended list ran dry under the constraints: top up with visual neighbours, ranked after
            have = {i for i, _, _ in rows} | set(constraints.exclude)
            extra = self._visual(item_id, k + len(have), constraints, stock=True, exclude=have)
            rows += [(i, s * TOP_UP_SCALE, "visual") for i, s, _ in extra[: k - len(rows)]]
        return rows

    def _select(self, ids: np.ndarray, scores: np.ndarray, k: int, banned: set[str],
                allowed: np.ndarray | None) -> list[tuple[str, float]]:
        """The first k of a ranked candidate list that are catalogue items, not banned, and allowed."""
        out = []
        for item_id, score in zip(ids, scores):
            item_id = str(item_id)
            row = self.row_of.get(item_id)
            if row is None or item_id in banned or (allowed is not None and not allowed[row]):
                continue
            out.append((item_id, float(score)))
            if len(out) == k:
                break
        return out

    def similar_to_vectors(self, xq: np.ndarray, k: int, constraints: Constraints = NO_CONSTRAINTS,
                           mode: str = "visual") -> list[Answer]:
        """Nearest items to unit vectors (image similarity only: behaviour models know items, not
        vectors), over-fetching to make room for the constraints."""
        self._check(k, mode)
        self.check(constraints)
        note = None if mode == "visual" else RAW_VECTOR
        allowed = self._allowed(constraints, constraints.in_stock)
        xq = np.ascontiguousarray(xq, dtype=np.float32)
        if allowed is not None or constraints.arranges or self.rules.reorders:
            banned = [self.row_of[i] for i in constraints.exclude if i in self.row_of]

            def nearest(q: np.ndarray) -> Callable[[int], list[Row]]:
                return lambda n: [(i, s, "visual") for i, s in
                                  self.index.nearest(q, min(n, len(self)), banned, allowed)]

            return [self._finish(self._answer(rows, "visual", mode, note), moved)
                    for rows, moved in (self._arrange(nearest(q), k, constraints) for q in xq)]
        fetch = k if not constraints.exclude else min(len(self), max(4 * k, k + len(constraints.exclude)))
        scores, ids = self.index.search(xq, fetch)
        banned_ids = set(constraints.exclude)
        # ids are "" where the index found fewer: not catalogue items, so _select leaves them out
        return [Answer(self._select(row_ids, row_scores, k, banned_ids, None), "visual", mode, note)
                for row_ids, row_scores in zip(ids, scores)]

    # -- arranging and explaining ----------------------------------------------------------------
    def _arrange(self, ranked: Callable[[int], list[Row]], k: int,
                 constraints: Constraints) -> tuple[list[Row], dict[str, tuple[str, float]]]:
        """`ranked(n)` (the best n candidates under the constraints) cut to k, after the version's
        boost and bury rules, group_by (the best row of each value) and diversity (maximal
        marginal relevance). Asks for more candidates until k groups are found or the candidates
        run out. Rows keep their scores before the rules; `moved` maps an item a rule moved to
        (rule name, factor its score is to be multiplied by: `_finish`)."""
        if not constraints.arranges and not self.rules.reorders:
            return ranked(k), {}
        pool = max(3 * k, k + 20) if constraints.diversity > 0 else k
        fetch = max(4 * k, pool, k + RULE_CANDIDATES if self.rules.reorders else 0)
        while True:
            rows = ranked(fetch)
            ruled, moved = self._apply_rules(rows)
            picked = self._group(ruled, constraints.group_by) if constraints.group_by else ruled
            if len(picked) >= pool or len(rows) < fetch or fetch >= len(self):
                break
            fetch *= 4
        if constraints.diversity > 0:
            picked = self._mmr(picked[:pool], k, constraints.diversity)
        picked = picked[:k]
        return picked, {i: moved[i] for i, _, _ in picked if i in moved}

    def _apply_rules(self, rows: list[Row]) -> tuple[list[Row], dict[str, tuple[str, float]]]:
        """Rows re-ranked by boosted scores, buried ones last; which rule moved which item."""
        rules = self.rules
        if not rules.reorders:
            return rows, {}
        moved: dict[str, tuple[str, float]] = {}
        keyed = []
        for n, (item_id, score, _) in enumerate(rows):
            row = self.row_of[item_id]
            factor, buried = 1.0, False
            for name, mask, boost in rules.boosts:
                if mask[row]:
                    factor *= boost if score >= 0 else 1.0 / boost
                    moved[item_id] = (name, factor)
            for name, mask in rules.buries:
                if mask[row]:
                    buried = True
                    moved[item_id] = (name, factor)
            keyed.append((buried, -score * factor, n))
        keyed.sort()
        return [rows[n] for _, _, n in keyed], moved

    def _finish(self, answer: Answer, moved: dict[str, tuple[str, float]]) -> Answer:
        """Apply the rules' factors to the scores (and their parts) and name the rule on each row
        it moved."""
        if not moved:
            return answer
        rules: list[str | None] = []
        for n, (item_id, score) in enumerate(answer.rows):
            name, factor = moved.get(item_id, (None, 1.0))
            rules.append(name)
            if factor != 1.0:
                answer.rows[n] = (item_id, score * factor)
                if answer.sources is not None:
                    answer.sources[n] = {source: part * factor for source, part in answer.sources[n].items()}
        answer.rules = rules
        return answer

    def _group(self, rows: list[Row], column: str) -> list[Row]:
        values = self._groups.get(column)
        if values is None:
            values = self.index.items[column].to_numpy(dtype=object)
            self._groups[column] = values
        seen: set[Any] = set()
        out = []
        for row in rows:
            value = values[self.row_of[row[0]]]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                out.append(row)  # no value: a group of its own
            elif value not in seen:
                seen.add(value)
                out.append(row)
        return out

    def _mmr(self, rows: list[Row], k: int, diversity: float) -> list[Row]:
        """Greedy maximal marginal relevance: each pick maximises (1 - d) * score - d * (its
        highest cosine to an item already picked), over the items' visual vectors."""
        if len(rows) <= 1:
            return rows[:k]
        vectors = np.asarray(self.index.vectors[[self.row_of[i] for i, _, _ in rows]], dtype=np.float32)
        relevance = np.array([s for _, s, _ in rows], dtype=np.float64)
        closest = np.full(len(rows), -np.inf)
        taken = np.zeros(len(rows), dtype=bool)
        order = []
        for _ in range(min(k, len(rows))):
            value = (1.0 - diversity) * relevance - diversity * np.where(np.isinf(closest), 0.0, closest)
            value[taken] = -np.inf
            pick = int(np.argmax(value))
            order.append(pick)
            taken[pick] = True
            closest = np.maximum(closest, vectors @ vectors[pick])
        return [rows[i] for i in order]

    def _answer(self, rows: list[Row], used: str, mode: str, note: str | None,
                parts: dict[str, Any] | None = None) -> Answer:
        """An Answer from ranked rows; `sources` only where a row's score is not all from `used`
        (hybrid rows split by `parts`, the query item's hybrid item_parts)."""
        pairs = [(i, s) for i, s, _ in rows]
        if all(source == used for _, _, source in rows) and used != "hybrid":
            return Answer(pairs, used, mode, note)
        hybrid_rows = [(i, s) for i, s, source in rows if source == "hybrid"]
        explained = {}
        if parts is not None and hybrid_rows:
            explained = dict(zip([i for i, _ in hybrid_rows], self._hybrid_sources(parts, hybrid_rows)))
        sources = [explained.get(i, {"hybrid": s}) if source == "hybrid" else {source: s}
                   for i, s, source in rows]
        return Answer(pairs, used, mode, note, sources=sources)

    def _hybrid_sources(self, parts: dict[str, Any],
                        pairs: list[tuple[str, float]]) -> list[dict[str, float]]:
        """Each row's `why` sources from the hybrid's per-source parts (1 x items each). What the
        parts leave unexplained is the popularity tie-break (about 1e-6, counted with the visual
        part) or, where the version interleaves new items, the cold entry's re-scoring (`cold_entry`)."""
        out = []
        for item_id, score in pairs:
            column = self.hybrid.item_position(item_id)
            sources = {name: float(part[0, column]) for name, part in parts.items()}
            rest = score - sum(sources.values())
            if abs(rest) > TIE_BREAK_SLACK or not sources:
                sources["cold_entry"] = rest
            else:
                sources["visual" if "visual" in sources else next(iter(sources))] += rest
            out.append(sources)
        return out

    # -- users ---------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, constraints: Constraints = NO_CONSTRAINTS) -> Answer:
        """Personal items for a known user (seen and bought ones dropped), popular ones otherwise;
        each row's `source` says which. Raises InputError when the version has no behaviour data."""
        self._check(k, "hybrid")
        self.check(constraints)
        if self.behaviour is None:
            raise InputError(self.behaviour_error or f"version {self.version}: no behaviour data")
        user = self._users.get(user_id)
        interactions = self.behaviour.interactions
        history = parts = None
        if user is None:
            popularity = self.hybrid.popularity
            scores = popularity.astype(np.float32) if popularity is not None \
                else np.zeros(len(self.model.item_ids), np.float32)
            source = "popular"
        else:
            history = interactions.recent[user]
            parts = self.hybrid.history_parts(history)  # computed once: the scores and their `why`
            # what the list may not hold takes no place in the cold entry's count either
            hidden = ~self._model_allowed(constraints)
            hidden[interactions.matrix[user].indices] = True
            exclude = sp.csr_matrix(hidden[None, :].astype(np.float32))
            scores = self.hybrid.scores_from_parts(parts, history, exclude)[0]
            scores[interactions.matrix[user].indices] = -np.inf
            source = "personal"
        scores = scores.copy()
        scores[~self._model_allowed(constraints)] = -np.inf

        def ranked(n: int) -> list[Row]:
            ids, top = self.hybrid._top(scores, n)
            return [(str(i), float(s), "hybrid") for i, s in zip(ids, top)]

        rows, moved = self._arrange(ranked, k, constraints)
        pairs = [(i, s) for i, s, _ in rows]
        if history is None:
            sources = [{"popularity": s} for _, s in pairs]
            extras = [{"source": source, "because": []} for _ in pairs]
        else:
            sources = self._hybrid_sources(parts, pairs)
            extras = [{"source": source, "because": because}
                      for because in self._because(history.indices, history.data, [i for i, _ in pairs])]
        return self._finish(Answer(pairs, "hybrid", "hybrid", None, extras, sources), moved)

    def _because(self, positions: np.ndarray, weights: np.ndarray, ids: list[str]) -> list[list[str]]:
        """Per item in `ids`: up to 3 history items (model positions, weights) whose own scores
        for it are highest (looking at the BECAUSE_HISTORY heaviest ones)."""
        if not ids or len(positions) == 0:
            return [[] for _ in ids]
        heaviest = np.argsort(-np.asarray(weights), kind="stable")[:BECAUSE_HISTORY]
        positions = np.asarray(positions)[heaviest]
        one_hot = sp.csr_matrix((np.ones(len(positions), np.float32), (np.arange(len(positions)), positions)),
                                shape=(len(positions), len(self.model.item_ids)))
        columns = [self.model.item_position(i) for i in ids]
        scores = np.asarray(self.hybrid.score_histories(one_hot))[:, columns]  # (history items, ids)
        history_ids = [str(self.model.item_ids[p]) for p in positions]
        out = []
        for j in range(len(ids)):
            column = scores[:, j]
            order = [h for h in np.argsort(-column, kind="stable")[:3] if column[h] > POPULARITY_FLOOR]
            out.append([history_ids[h] for h in order])
        return out

    # -- sessions ------------------------------------------------------------------------------
    def knows(self, item_id: str) -> bool:
        """Whether the index or the behaviour data knows the item."""
        return item_id in self.row_of or (self.behaviour is not None and self._position(item_id) is not None)

    def session(self, positive: Sequence[str], negative: Sequence[str] = (), k: int = 10,
                mode: str = DEFAULT_MODE, constraints: Constraints = NO_CONSTRAINTS) -> Answer:
        """Items for an anonymous session, or "more like these, less like that": the positives'
        scores minus NEGATIVE_WEIGHT times the negatives' (visual: the nearest items to the mean
        positive vector minus NEGATIVE_WEIGHT times the mean negative one). Positives and negatives
        never come back; ids the version does not know are ignored (UnknownItem when no positive is
        known). Each row's `because`: up to 3 positives that led to it, the strongest first."""
        self._check(k, mode)
        self.check(constraints)
        used, note = self.answering_mode(mode)
        banned = set(positive) | set(negative) | set(constraints.exclude)
        if used == "hybrid" and all(self._position(i) is None for i in positive):
            used, note = "visual", COLD_SESSION
        if used == "visual":
            pos = [self.row_of[i] for i in dict.fromkeys(positive) if i in self.row_of]
            if not pos:
                raise UnknownItem(positive[0] if positive else "")
            neg = [self.row_of[i] for i in dict.fromkeys(negative) if i in self.row_of]
            vectors = np.asarray(self.index.vectors[pos], dtype=np.float32)
            q = vectors.mean(axis=0)
            if neg:
                q = q - NEGATIVE_WEIGHT * np.asarray(self.index.vectors[neg], dtype=np.float32).mean(axis=0)
            norm = float(np.linalg.norm(q))
            q = q / norm if norm > 0 else vectors[0]
            banned_rows = [self.row_of[i] for i in banned if i in self.row_of]
            allowed = self._allowed(constraints, constraints.in_stock)
            rows, moved = self._arrange(lambda n: [(i, s, "visual") for i, s in self.index.nearest(
                q, min(n, len(self)), banned_rows, allowed)], k, constraints)
            answer = self._finish(self._answer(rows, used, mode, note), moved)
            pos_ids = [self.item_ids[r] for r in pos]
            extras = []
            found = answer.ids()
            # the results' vectors in one read (a row of a memory map at a time costs more)
            found_vectors = np.asarray(self.index.vectors[[self.row_of[i] for i in found]], dtype=np.float32)
            if len(found):
                cosines = np.stack([vectors @ vector for vector in found_vectors])  # (results, positives)
                for order in np.argsort(-cosines, axis=1, kind="stable")[:, :3].tolist():
                    extras.append({"because": [pos_ids[j] for j in order]})
            answer.extras = extras
            return answer
        pos = [p for p in (self._position(i) for i in dict.fromkeys(positive)) if p is not None]
        if not pos:
            raise UnknownItem(positive[0] if positive else "")
        neg = [p for p in (self._position(i) for i in dict.fromkeys(negative)) if p is not None]
        source = self.hybrid if used == "hybrid" else self.model
        n_items = len(self.model.item_ids)
        history = sp.csr_matrix((np.ones(len(pos), np.float32), (np.arange(len(pos)), pos)),
                                shape=(len(pos), n_items))
        negative_rows = sp.csr_matrix((np.ones(len(neg), np.float32), (np.zeros(len(neg), int), neg)),
                                      shape=(1, n_items))
        # hybrid: each source's parts computed once, for the scores and for their `why`
        pos_parts = self.hybrid.history_parts(history) if used == "hybrid" else None
        neg_parts = self.hybrid.history_parts(negative_rows) if used == "hybrid" and neg else None

        def scored(rows: sp.csr_matrix, parts: dict[str, np.ndarray] | None) -> np.ndarray:
            if parts is None:
                return source.score_histories(rows)
            return self.hybrid.scores_from_parts(parts, rows)

        per_positive = scored(history, pos_parts)  # (positives, items)
        scores = per_positive.sum(axis=0)
        if neg:
            scores = scores - NEGATIVE_WEIGHT * scored(negative_rows, neg_parts)[0]
        scores = np.asarray(scores, dtype=np.float32).copy()
        allowed = self._model_allowed(constraints)
        allowed[[p for p in (self._position(i) for i in banned) if p is not None]] = False
        scores[~allowed] = -np.inf

        def ranked(n: int) -> list[Row]:
            ids, top = source._top(scores, n)
            return [(str(i), float(s), used) for i, s in zip(ids, top)]

        rows, moved = self._arrange(ranked, k, constraints)
        pairs = [(i, s) for i, s, _ in rows]
        sources = None
        if pos_parts is not None:
            parts = {name: part.sum(axis=0, keepdims=True) for name, part in pos_parts.items()}
            for name, part in (neg_parts or {}).items():
                parts[name] = parts[name] - NEGATIVE_WEIGHT * part
            sources = self._hybrid_sources(parts, pairs)
        pos_ids = [str(self.model.item_ids[p]) for p in pos]
        extras = []
        for item_id, _ in pairs:
            column = per_positive[:, self.model.item_position(item_id)]
            order = [j for j in np.argsort(-column, kind="stable")[:3] if column[j] > POPULARITY_FLOOR]
            extras.append({"because": [pos_ids[j] for j in order]})
        return self._finish(Answer(pairs, used, mode, note, extras, sources), moved)

    # -- constraints ---------------------------------------------------------------------------
    def _allowed(self, constraints: Constraints, stock: bool) -> np.ndarray | None:
        """Per index row: may it be shown under these constraints? None: every row may. Read-only
        and kept per (category, filter, stock), so the index reuses what it derives from a mask."""
        key = (constraints.category, constraints.filter, stock)
        cached = self._masks.get(key)
        if cached is not MISSING:
            return cached
        mask = self.rules.shown  # None unless the version blocks items
        if stock and self._in_stock is not None:
            mask = self._in_stock if mask is None else mask & self._in_stock
        if constraints.category is not None:
            categories = self._category_values()
            same = (categories == constraints.category if categories is not None
                    else np.zeros(len(self), dtype=bool))
            mask = same if mask is None else mask & same
        if constraints.filter is not None:
            matching = self.filters.mask(constraints.filter)
            mask = matching if mask is None else mask & matching
        if mask is not None and mask.flags.writeable:
            mask.flags.writeable = False
        return self._masks.put(key, mask)

    def _category_values(self) -> np.ndarray | None:
        """Each row's category as str (None: the catalogue has none), made on the first category
        asked for rather than while the version loads: a second of work at 1,000,000 items."""
        if self._categories is None and "category" in self.index.items:
            self._categories = self.index.items["category"].astype(str).to_numpy(dtype=str)
        return self._categories

    def _model_allowed(self, constraints: Constraints) -> np.ndarray:
        """`_allowed` (stock always) over the models' item space, without excluded items."""
        in_catalogue = self._model_rows >= 0
        allowed = self._allowed(constraints, True)
        if allowed is None:
            ok = in_catalogue
        else:
            ok = in_catalogue & allowed[np.where(in_catalogue, self._model_rows, 0)]
        if constraints.exclude:
            excluded = [self.row_of[i] for i in constraints.exclude if i in self.row_of]
            ok = ok & ~np.isin(self._model_rows, excluded)
        return ok

    @staticmethod
    def _check(k: int, mode: str) -> None:
        if mode not in MODES:
            raise InputError(f"mode {mode!r}: expected one of {list(MODES)}")
        if not 1 <= k <= K_MAX:
            raise InputError(f"k must be from 1 to {K_MAX}, got {k}")
