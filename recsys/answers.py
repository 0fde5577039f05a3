"""The one owner of the answer: which items may be shown for a query, and in what order.

    answers = Answers.load(store_dir, version=None)         # CURRENT by default
    answers.similar(item_id, k, mode, constraints)           -> Answer
    answers.stored_similar(item_id, k, mode)                 -> Answer | None  (lookup only: the fast path)
    answers.similar_to_vectors(unit_vectors, k, constraints) -> [Answer, ...]
    answers.recommend(user_id, k, constraints)               -> Answer

Everything that decides what comes back lives here: candidate lookup (the version's stored
neighbour lists, a live index search, the behaviour and hybrid models), exclusions, stock, filters
(`Constraints`, applied as one boolean mask over the index's rows) and ordering. An `Answer` holds
(item_id, score) rows and per-row extra fields, never catalogue metadata: the API and the command
line join that once, at their edge (recsys/api/serving.py, jobs/cli/query.py).

The rules:
- Visual answers are pure image similarity (cosine scores; out-of-stock items included unless
  `Constraints.in_stock`). Behaviour and hybrid answers, and recommendations, hold only catalogue
  items in stock (where the catalogue has an `in_stock` column).
- Hybrid answers for an item without behaviour are its visual neighbours; hybrid lists that run
  dry under the constraints are topped up with visual neighbours, ranked after (score x 1e-3).
- A version without behaviour data answers behaviour and hybrid queries visually and says so in
  `Answer.note`; an unknown user gets the popular items.
- The query item is never in its own answer; `exclude` ids never are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from recsys.errors import InputError, UnknownItem

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


@dataclass(frozen=True)
class Constraints:
    """What every result must satisfy besides its mode. Hashable (part of the API's cache keys).

    A new kind of constraint (issue 13: `filter`, `group_by`, `diversity`, business rules) is a
    field here, applied in `Answers._allowed` (a mask over the index's rows) or `Answers._select`
    (over a ranked candidate list); every route and command then honours it.
    """

    exclude: tuple[str, ...] = ()  # sorted, unique (use `Constraints.of`)
    category: str | None = None
    in_stock: bool = False  # visual answers too hold only items in stock

    @classmethod
    def of(cls, exclude: Iterable[str] = (), category: str | None = None,
           in_stock: bool = False) -> Constraints:
        return cls(tuple(sorted(set(exclude))), category, in_stock)


NO_CONSTRAINTS = Constraints()


@dataclass(slots=True)
class Answer:
    """Ranked rows (item_id, score), best first; `extras[i]`: fields row i carries besides those."""

    rows: list[tuple[str, float]]
    mode: str = "visual"  # the mode that answered
    requested_mode: str = "visual"
    note: str | None = None  # why `mode` differs from `requested_mode`
    extras: list[dict[str, Any]] | None = field(default=None)

    def ids(self) -> list[str]:
        return [item_id for item_id, _ in self.rows]


class Answers:
    """The answers of one store version: its loaded index and, where it has them, behaviour models."""

    def __init__(self, index: LoadedIndex, behaviour: Behaviour | None = None,
                 behaviour_error: str | None = None) -> None:
        self.index = index
        self.version = str(index.version)
        self.behaviour = behaviour
        self.behaviour_error = behaviour_error
        items = index.items
        self.item_ids: list[str] = items["item_id"].astype(str).tolist()  # in index row order
        self.row_of: dict[str, int] = {item_id: row for row, item_id in enumerate(self.item_ids)}
        self._categories = items["category"].astype(str).to_numpy(dtype=str) if "category" in items else None
        self._in_stock = (items["in_stock"].fillna(False).astype(bool).to_numpy()
                          if "in_stock" in items else None)
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
        Raises IndexLoadError when the index version cannot be loaded."""
        if index is None:
            from index.store import load_version

            index = load_version(store_dir, version)
        if behaviour == "none":
            return cls(index)
        from recsys.behaviour_store import load_behaviour

        try:
            return cls(index, load_behaviour(Path(index.path)))
        except Exception as exc:  # noqa: BLE001 - no behaviour data must not stop visual answers
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

    # -- similar items -------------------------------------------------------------------------
    def stored_similar(self, item_id: str, k: int, mode: str = DEFAULT_MODE) -> Answer | None:
        """The unconstrained answer when the stored neighbour lists hold it, else None (a live
        search is needed). Cheap enough for the event loop: the API's fast path."""
        used, note = self.answering_mode(mode)
        row = self.row_of.get(item_id)
        if used != "visual" or row is None:
            return None
        rows = self.index.stored_neighbours(row, k)
        return None if rows is None else Answer(rows, used, mode, note)

    def similar(self, item_id: str, k: int = 10, mode: str = DEFAULT_MODE,
                constraints: Constraints = NO_CONSTRAINTS) -> Answer:
        """Items most like `item_id`; raises UnknownItem when neither the index nor the behaviour
        data knows it, InputError for a bad mode or k."""
        self._check(k, mode)
        used, note = self.answering_mode(mode)
        if used == "visual":
            if item_id not in self.row_of:
                raise UnknownItem(item_id)
            rows = self._visual(item_id, k, constraints, stock=constraints.in_stock)
        else:
            rows = self._blended(item_id, k, used, constraints)
        return Answer(rows, used, mode, note)

    def _visual(self, item_id: str, k: int, constraints: Constraints, stock: bool,
                exclude: Iterable[str] | None = None) -> list[tuple[str, float]]:
        allowed = self._allowed(constraints, stock)
        where = None if allowed is None else (lambda _items: allowed)
        exclude = constraints.exclude if exclude is None else tuple(exclude)
        found = self.index.similar(item_id, k, exclude=exclude, where=where)
        return [(str(i), float(s)) for i, s in found]

    def _blended(self, item_id: str, k: int, mode: str, constraints: Constraints) -> list[tuple[str, float]]:
        in_index = item_id in self.row_of
        try:
            position: int | None = self.model.item_position(item_id)
        except UnknownItem:
            position = None
        if not in_index and position is None:
            raise UnknownItem(item_id)
        if mode == "hybrid" and position is None:  # no behaviour for this item yet
            return self._visual(item_id, k, constraints, stock=True)
        source = self.hybrid if mode == "hybrid" else self.model
        ids, scores = source.similar_items(item_id, CANDIDATES)
        banned = set(constraints.exclude) | {item_id}
        rows = self._select(ids, scores, k, banned, self._allowed(constraints, True))
        if mode == "hybrid" and len(rows) < k and in_index:
            # the blended list ran dry under the constraints: top up with visual neighbours, ranked after
            have = {i for i, _ in rows} | set(constraints.exclude)
            extra = self._visual(item_id, k + len(have), constraints, stock=True, exclude=have)
            rows += [(i, s * TOP_UP_SCALE) for i, s in extra[: k - len(rows)]]
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
        note = None if mode == "visual" else RAW_VECTOR
        allowed = self._allowed(constraints, constraints.in_stock)
        if not constraints.exclude and allowed is None:
            fetch = k
        else:
            fetch = max(4 * k, k + len(constraints.exclude)) if allowed is None else max(20 * k, 200)
            fetch = min(len(self), fetch)
        scores, ids = self.index.search(np.ascontiguousarray(xq, dtype=np.float32), fetch)
        banned = set(constraints.exclude)
        # ids are "" where the index found fewer: not catalogue items, so _select leaves them out
        return [Answer(self._select(row_ids, row_scores, k, banned, allowed), "visual", mode, note)
                for row_ids, row_scores in zip(ids, scores)]

    # -- users ---------------------------------------------------------------------------------
    def recommend(self, user_id: str, k: int = 10, constraints: Constraints = NO_CONSTRAINTS) -> Answer:
        """Personal items for a known user (seen and bought ones dropped), popular ones otherwise;
        each row's `source` says which. Raises InputError when the version has no behaviour data."""
        self._check(k, "hybrid")
        if self.behaviour is None:
            raise InputError(self.behaviour_error or f"version {self.version}: no behaviour data")
        user = self._users.get(user_id)
        interactions = self.behaviour.interactions
        if user is None:
            popularity = self.hybrid.popularity
            scores = popularity.astype(np.float32) if popularity is not None \
                else np.zeros(len(self.model.item_ids), np.float32)
            source = "popular"
        else:
            scores = self.hybrid.score_histories(interactions.recent[user])[0]
            scores[interactions.matrix[user].indices] = -np.inf
            source = "personal"
        scores = scores.copy()
        scores[~self._model_allowed(constraints)] = -np.inf
        ids, top = self.hybrid._top(scores, k)
        rows = [(str(i), float(s)) for i, s in zip(ids, top)]
        return Answer(rows, "hybrid", "hybrid", None, [{"source": source}] * len(rows))

    # -- constraints ---------------------------------------------------------------------------
    def _allowed(self, constraints: Constraints, stock: bool) -> np.ndarray | None:
        """Per index row: may it be shown under these constraints? None: every row may."""
        mask = None
        if stock and self._in_stock is not None:
            mask = self._in_stock
        if constraints.category is not None:
            same = (self._categories == constraints.category if self._categories is not None
                    else np.zeros(len(self), dtype=bool))
            mask = same if mask is None else mask & same
        return mask

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
