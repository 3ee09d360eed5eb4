"""Cloudflare Logs API filters → SQL with bound parameters, for SQLite and PostgreSQL.

Values are only ever bound (`?` or `$n`); the only text formatted into SQL is the table
name (validated at start-up), column names and operators from the fixed tables below.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from aigw import _json
from aigw.errors import LogsBadRequest
from aigw.logstore.codec import REQUEST, RESPONSE, unpack
from aigw.logstore.row import COLUMNS

__all__ = ["BadFilter", "Dialect", "SQLITE", "POSTGRES", "Query", "parse_query", "Binder",
           "where_sql", "order_sql", "LIST_COLUMNS", "row_to_api", "iso_ms", "ms_iso",
           "check_table", "Analytics", "parse_analytics", "INTERVALS"]


class BadFilter(LogsBadRequest):
    """A Logs API filter the gateway cannot honour (400, never a 500)."""

    message = "Invalid filter"


_TABLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_table(name: str) -> str:
    """A table name safe to place in SQL text; anything else is a programming error."""
    if not _TABLE.match(name):
        raise ValueError(f"invalid log table name {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the two SQL dialects."""

    name: str
    positional: bool  # $1, $2 (PostgreSQL) rather than ?
    like: str
    meta_key: str  # {t} table, {p} placeholder
    meta_value: str
    meta_value_like: str
    meta_get: str  # the text of one metadata entry, {p} its key
    num: str  # a numeric column compared with a bound float
    collate: str  # after a text column in ORDER BY: the same order on both backends


# A metadata value as text, as PostgreSQL's jsonb_each_text gives it: SQLite's json_each
# holds JSON true/false as the integers 1/0, so its type column names them instead.
_SQLITE_META_TEXT = ("CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                     "ELSE CAST(j.value AS TEXT) END")
SQLITE = Dialect(
    "sqlite", False, "LIKE",
    "EXISTS (SELECT 1 FROM json_each({t}.metadata) j WHERE j.key = {p})",
    f"EXISTS (SELECT 1 FROM json_each({{t}}.metadata) j WHERE {_SQLITE_META_TEXT} = {{p}})",
    f"EXISTS (SELECT 1 FROM json_each({{t}}.metadata) j WHERE {_SQLITE_META_TEXT} LIKE {{p}} "
    "ESCAPE '\\')",
    f"(SELECT {_SQLITE_META_TEXT} FROM json_each({{t}}.metadata) j WHERE j.key = {{p}})",
    "{c}",
    "",  # BINARY: the UTF-8 bytes, that is code point order
)
POSTGRES = Dialect(
    "postgres", True, "ILIKE",
    "EXISTS (SELECT 1 FROM jsonb_each_text({t}.metadata::jsonb) j WHERE j.key = {p})",
    "EXISTS (SELECT 1 FROM jsonb_each_text({t}.metadata::jsonb) j WHERE j.value = {p})",
    "EXISTS (SELECT 1 FROM jsonb_each_text({t}.metadata::jsonb) j WHERE j.value ILIKE {p} "
    "ESCAPE '\\')",
    "({t}.metadata::jsonb ->> {p})",
    "({c})::float8",  # asyncpg binds int columns as int only; floats compare as float8
    ' COLLATE "C"',  # code point order too, whatever the database's locale
)


class Binder:
    """Collects bound parameters and hands out the dialect's placeholders."""

    __slots__ = ("dialect", "params")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.params: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}" if self.dialect.positional else "?"


# ---------------------------------------------------------------- parsing

_TEXT = ("id", "request_content_type", "response_content_type", "request_type", "provider",
         "model", "model_type", "event_id", "user_agent")
_NUM = ("cost", "tokens_in", "tokens_out", "duration", "feedback", "tokens")
_BOOL = ("success", "cached")
_TOTAL = "(COALESCE({t}.tokens_in, 0) + COALESCE({t}.tokens_out, 0))"
_OPS = ("eq", "neq", "contains", "lt", "gt")
ORDER_KEYS = ("created_at", "provider", "model", "model_type", "success", "cached", "cost",
              "tokens_in", "tokens_out", "duration", "feedback")
_RANGES = {"cost": "{t}.cost", "duration": "{t}.duration", "tokens_in": "{t}.tokens_in",
           "tokens_out": "{t}.tokens_out", "total_tokens": _TOTAL}
_EQ_PARAMS = ("model", "model_type", "provider", "request_content_type",
              "response_content_type")
MAX_PER_PAGE = 1000


@dataclass(slots=True)
class Cond:
    key: str
    op: str
    values: list[Any]


@dataclass(slots=True)
class Query:
    """A validated list/delete query."""

    conds: list[Cond] = field(default_factory=list)
    order_by: str = "created_at"
    direction: str = "desc"
    page: int = 1
    per_page: int = 20
    limit: int | None = None  # DELETE only


def iso_ms(text: str, name: str) -> int:
    """ISO 8601 → Unix ms (naive times are UTC)."""
    try:
        dt = datetime.fromisoformat(text.strip().replace(" ", "+") if "T" in text else text)
    except ValueError:
        raise BadFilter(f"{name}: not an ISO 8601 date-time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def ms_iso(ms: int) -> str:
    """Unix ms → `2026-11-01T12:00:00.123Z`."""
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).strip().lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise BadFilter(f"{name}: must be true or false, got {value!r}")


# Numbers in query text, ASCII only: Python's int() and float() also take "1_0", " 1 ",
# "+1", "nan", "inf" and digits of other scripts ("١٠"), which a client never means.
_INT_TEXT = re.compile(r"-?[0-9]+", re.ASCII)
_FLOAT_TEXT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?", re.ASCII)


def _num(value: Any, name: str) -> float:
    """A finite number: a JSON number, or text such as `-1`, `0.5`, `2e-3` (strictly)."""
    if isinstance(value, bool):
        raise BadFilter(f"{name}: must be a number")
    if isinstance(value, str):
        if not _FLOAT_TEXT.fullmatch(value):
            raise BadFilter(f"{name}: must be a number, got {value!r}")
        out = float(value)
    elif isinstance(value, (int, float)):
        try:
            out = float(value)
        except OverflowError:  # a JSON integer beyond any float
            raise BadFilter(f"{name}: must be a finite number") from None
    else:
        raise BadFilter(f"{name}: must be a number, got {value!r}")
    if not math.isfinite(out):
        raise BadFilter(f"{name}: must be a finite number")
    return out


def _int_param(q: Any, name: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(name)
    if raw is None or raw == "":
        return default
    if not _INT_TEXT.fullmatch(raw):
        raise BadFilter(f"{name}: must be an integer (ASCII digits only), got {raw!r}")
    value = int(raw) if len(raw) <= 20 else hi + 1  # int() refuses 4300+ digits
    if not lo <= value <= hi:
        raise BadFilter(f"{name}: must be between {lo} and {hi}")
    return value


def _text(value: Any, name: str) -> str:
    """Text to bind: a string as it is (PostgreSQL cannot take NUL in text, and no stored
    text holds one), a JSON true/false/number as its JSON text (`true`, `1.5`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if "\x00" in value:
        raise BadFilter(f"{name}: text cannot contain NUL characters")
    return value


def _coerce(key: str, op: str, values: list[Any]) -> list[Any]:
    """The values of one filter, checked and converted for its key and operator.

    Every filter that reaches SQL has at least one usable value: null only under eq/neq on
    a column (IS NULL), never under contains, lt, gt or on metadata; contains needs
    non-empty text.
    """
    name = f"filters[{key}]"
    if op not in _OPS:
        raise BadFilter(f"{name}: operator must be one of {', '.join(_OPS)}")
    if not values:
        raise BadFilter(f"{name}: needs at least one value")
    if any(v is not None and not isinstance(v, (str, int, float)) for v in values):
        raise BadFilter(f"{name}: values must be strings, numbers, booleans or null")
    if op in ("lt", "gt") and len(values) != 1:
        raise BadFilter(f"{name}: {op} takes exactly one value")
    if key == "created_at":
        if op == "contains":
            raise BadFilter(f"{name}: contains is not supported on dates")
        return [iso_ms(str(v), name) for v in values]
    if key in _BOOL:
        if op not in ("eq", "neq"):
            raise BadFilter(f"{name}: only eq and neq apply to booleans")
        return [_bool(v, name) for v in values]
    if key in _NUM:
        if op == "contains":
            raise BadFilter(f"{name}: contains is not supported on numbers")
        nums = [_num(v, name) for v in values]
        if key == "feedback":  # the API's 0|1 means thumbs down|up, stored as -1|1
            nums = [-1.0 if n == 0 else n for n in nums]
        return nums
    if key in _TEXT or key in ("metadata.key", "metadata.value"):
        if op in ("lt", "gt") and key != "id":
            raise BadFilter(f"{name}: lt and gt apply to numbers and dates only")
        if op == "contains" and key == "metadata.key":
            raise BadFilter(f"{name}: use eq or neq")
        if None in values and (op not in ("eq", "neq") or key.startswith("metadata.")):
            raise BadFilter(f"{name}: null is a value only for eq and neq on a field "
                            "(rows where it is empty)")
        texts = [None if v is None else _text(v, name) for v in values]
        if op == "contains" and "" in texts:
            raise BadFilter(f"{name}: contains needs non-empty text")
        return texts
    raise BadFilter(f"filters: unsupported key {key!r}")


def _filters_from_query(q: Any) -> list[Cond]:
    """`filters` in any of the encodings clients send.

    - a JSON array in one `filters` parameter;
    - `filters[0][key]=..&filters[0][value][]=..` (brackets with an index);
    - `filters.key=..&filters.operator=..&filters.value=..`, as the official Python SDK
      sends it (read by `_dotted_filters`).
    """
    out: list[Cond] = []
    raw_json = q.getall("filters", [])
    for text in raw_json:
        try:
            items = _json.loads(text)
        except ValueError:
            raise BadFilter("filters: not a JSON array") from None
        if isinstance(items, dict):
            items = [items]
        if not isinstance(items, list):
            raise BadFilter("filters: not a JSON array")
        for item in items:
            if not isinstance(item, dict) or "key" not in item:
                raise BadFilter("filters: each filter needs key, operator and value")
            vals = item.get("value", [])
            out.append(_cond(item["key"], item.get("operator", "eq"),
                             vals if isinstance(vals, list) else [vals]))
    indexed: dict[str, dict[str, Any]] = {}
    dotted: list[tuple[str, str]] = []
    for name, value in q.items():
        if name.startswith("filters."):
            part = name[8:]
            if part not in ("key", "operator", "value", "value[]"):
                raise BadFilter(f"filters: unknown field {name!r}")
            dotted.append((part.rstrip("[]"), value))
        elif name.startswith("filters["):
            m = re.match(r"^filters\[(\d+)\]\[(key|operator|value)\](\[\d*\])?$", name)
            if m is None:
                raise BadFilter(f"filters: cannot read parameter {name!r}")
            entry = indexed.setdefault(m.group(1), {"operator": "eq", "value": []})
            if m.group(2) == "value":
                entry["value"].append(value)
            else:
                entry[m.group(2)] = value
    for entry in _dotted_filters(dotted) + [indexed[k] for k in sorted(indexed, key=int)]:
        if "key" not in entry:
            raise BadFilter("filters: a filter has no key")
        out.append(_cond(entry["key"], entry["operator"], entry["value"]))
    return out


_SINGLE_VALUE_OPS = ("lt", "gt")
_GROUPED_HELP = ("send filters as one JSON array in `filters` (with the Python SDK: "
                 "extra_query={'filters': json.dumps([...])}) or as "
                 "filters[0][key]=..&filters[0][operator]=..&filters[0][value][]=..")


def _dotted_filters(fields: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Filters from `filters.key`, `filters.operator` and `filters.value` (or `value[]`), in
    the query's order; two layouts:

    - interleaved, `key, operator, value.., key, operator, value..`: each key starts a
      filter;
    - grouped by field, `key, key, .., operator, operator, .., value, value, ..`: what the
      official Python SDK sends for two or more filters. Its query string is built per
      filter, then httpx's QueryParams re-orders it by parameter name, so which values
      belong to which filter is lost. A filter has at least one value, and exactly one
      under lt/gt: one value per filter, or the extra values all to the single filter that
      may take several, is then the only valid reading. Any other case is ambiguous and a
      400 says so, rather than guessing.
    """
    if not fields:
        return []
    if fields[0][0] != "key":
        raise BadFilter("filters: filters.key must come first")
    runs = [part for i, (part, _) in enumerate(fields) if i == 0 or fields[i - 1][0] != part]
    keys = [v for part, v in fields if part == "key"]
    if len(keys) < 2 or len(runs) != len(set(runs)):
        dotted: list[dict[str, Any]] = []
        for part, value in fields:
            if part == "key":
                dotted.append({"key": value, "operator": "eq", "value": []})
            elif part == "operator":
                dotted[-1]["operator"] = value
            else:
                dotted[-1]["value"].append(value)
        return dotted
    ops = [v for part, v in fields if part == "operator"] or ["eq"] * len(keys)
    values = [v for part, v in fields if part == "value"]
    n, m = len(keys), len(values)
    if len(ops) != n:
        raise BadFilter(f"filters: {n} filters.key but {len(ops)} filters.operator; "
                        "give each filter its operator")
    if m < n:
        raise BadFilter(f"filters: {n} filters but {m} filters.value, so a filter has no "
                        "value (each filter needs at least one; the SDK leaves out null "
                        "and empty-string values)")
    counts = [1] * n
    several = [i for i, op in enumerate(ops) if op not in _SINGLE_VALUE_OPS]
    if m > n:
        if not several:
            raise BadFilter(f"filters: {m} values for {n} lt/gt filters; lt and gt take "
                            "exactly one value")
        if len(several) > 1:
            raise BadFilter(f"filters: {n} filters with {m} values in all, sent grouped by "
                            "field (filters.key=..&filters.key=..&filters.value=..), as the "
                            "Python SDK does: which values belong to which filter is "
                            "ambiguous when more than one filter may have several values; "
                            + _GROUPED_HELP)
        counts[several[0]] += m - n
    out: list[dict[str, Any]] = []
    at = 0
    for key, op, count in zip(keys, ops, counts):
        out.append({"key": key, "operator": op, "value": values[at:at + count]})
        at += count
    return out


def _cond(key: Any, op: Any, values: list[Any]) -> Cond:
    key, op = str(key), str(op)
    return Cond(key, op, _coerce(key, op, values))


def parse_query(q: Any, *, delete: bool = False) -> Query:
    """Validate Logs API query parameters (a MultiDict) into a Query; 400 on anything odd."""
    query = Query(conds=_filters_from_query(q))
    conds = query.conds
    for name in _BOOL:
        if q.get(name) not in (None, ""):
            conds.append(Cond(name, "eq", [_bool(q[name], name)]))
    if q.get("feedback") not in (None, ""):
        fb = q["feedback"]
        if fb not in ("0", "1", "-1"):
            raise BadFilter("feedback: must be 0 or 1")
        conds.append(Cond("feedback", "eq", [-1.0 if fb in ("0", "-1") else 1.0]))
    for name in _EQ_PARAMS:
        if q.get(name) not in (None, ""):
            conds.append(Cond(name, "eq", [_text(q[name], name)]))
    if q.get("start_date"):
        conds.append(Cond("created_at", "ge", [iso_ms(q["start_date"], "start_date")]))
    if q.get("end_date"):
        conds.append(Cond("created_at", "le", [iso_ms(q["end_date"], "end_date")]))
    for name in _RANGES:
        for bound, op in (("min_", "ge"), ("max_", "le")):
            raw = q.get(bound + name)
            if raw not in (None, ""):
                conds.append(Cond("range:" + name, op, [_num(raw, bound + name)]))
    if q.get("search"):
        conds.append(Cond("search", "contains", [_text(q["search"], "search")]))
    order_by = q.get("order_by") or "created_at"
    if order_by not in ORDER_KEYS:
        raise BadFilter(f"order_by: must be one of {', '.join(ORDER_KEYS)}")
    query.order_by = order_by
    direction = (q.get("order_by_direction") or q.get("direction") or "desc").lower()
    if direction not in ("asc", "desc"):
        raise BadFilter("order_by_direction: must be asc or desc")
    query.direction = direction
    query.page = _int_param(q, "page", 1, 1, 10**9)
    query.per_page = _int_param(q, "per_page", 20, 1, MAX_PER_PAGE)
    if delete:
        lim = q.get("limit")
        query.limit = None if lim in (None, "") else _int_param(q, "limit", 0, 1, 10**9)
    return query


# ---------------------------------------------------------------- SQL

def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _column(key: str, t: str) -> str:
    if key == "tokens":
        return _TOTAL.format(t=t)
    return f"{t}.{key}"


def _cond_sql(c: Cond, b: Binder, t: str) -> str:
    d = b.dialect
    if c.key.startswith("range:"):
        col = d.num.format(c=_RANGES[c.key[6:]].format(t=t))
        return f"{col} {'>=' if c.op == 'ge' else '<='} {b(c.values[0])}"
    if c.key == "search":
        pat = _like(c.values[0])
        cols = ("metadata", "model", "provider", "path", "event_id")
        return "(" + " OR ".join(f"{t}.{col} {d.like} {b(pat)} ESCAPE '\\'" for col in cols) + ")"
    if c.key in ("metadata.key", "metadata.value"):
        if c.op == "contains":  # metadata.value only (_coerce)
            parts = [d.meta_value_like.format(t=t, p=b(_like(v))) for v in c.values]
        else:
            tmpl = d.meta_key if c.key == "metadata.key" else d.meta_value
            parts = [tmpl.format(t=t, p=b(v)) for v in c.values]
        any_sql = "(" + " OR ".join(parts) + ")"
        return f"NOT {any_sql}" if c.op == "neq" else any_sql
    col = "created_at" if c.key == "created_at" else c.key
    col = _column(col, t)
    if c.key in _NUM:
        col = d.num.format(c=col)
    if c.op in ("ge", "le", "lt", "gt"):
        sym = {"ge": ">=", "le": "<=", "lt": "<", "gt": ">"}[c.op]
        return f"{col} {sym} {b(c.values[0])}"
    if c.op == "contains":
        return "(" + " OR ".join(f"{col} {d.like} {b(_like(v))} ESCAPE '\\'"
                                 for v in c.values) + ")"
    parts = [f"{col} IS NULL" if v is None else f"{col} = {b(v)}" for v in c.values]
    any_sql = "(" + " OR ".join(parts) + ")"
    if c.op == "neq":
        return f"NOT COALESCE({any_sql}, FALSE)" if d.positional else f"NOT COALESCE({any_sql}, 0)"
    return any_sql


def where_sql(query: Query, b: Binder, t: str, account: str, gateway: str) -> str:
    """The WHERE clause (without the keyword) for a gateway's rows matching `query`."""
    parts = [f"{t}.account = {b(account)}", f"{t}.gateway = {b(gateway)}"]
    parts.extend(_cond_sql(c, b, t) for c in query.conds)
    return " AND ".join(parts)


_TEXT_ORDER = ("provider", "model", "model_type")


def order_sql(query: Query, t: str, dialect: Dialect) -> str:
    """ORDER BY text from the validated key and direction (ids break ties in time order).

    Both backends put NULLs last ascending and first descending (PostgreSQL's default;
    SQLite's is the reverse), spelled `(col IS NULL)` first rather than NULLS LAST, which
    SQLite before 3.30 lacks; created_at is never NULL. Text sorts by code point on both.
    """
    d = "ASC" if query.direction == "asc" else "DESC"
    col = f"{t}.{query.order_by}"
    if query.order_by == "created_at":
        return f"{col} {d}, {t}.id {d}"
    collate = dialect.collate if query.order_by in _TEXT_ORDER else ""
    return f"({col} IS NULL) {d}, {col}{collate} {d}, {t}.id {d}"


LIST_COLUMNS = tuple(c for c in COLUMNS if c not in ("request_body", "response_body", "body_codec"))
_DETAIL_ONLY = ("request_size", "response_size", "request_head_complete",
                "response_head_complete", "ttfb", "cache_read", "cache_write")


def _head(body: Any, codec: Any, which: int) -> str | None:
    data = unpack(body, codec, which)
    return None if data is None else data.decode("utf-8", "replace")


def row_to_api(rec: dict[str, Any], detail: bool) -> dict[str, Any]:
    """A stored row as the Logs API returns it."""
    out: dict[str, Any] = {}
    for c in LIST_COLUMNS:
        if c in ("account", "gateway") or (not detail and c in _DETAIL_ONLY):
            continue
        value = rec.get(c)
        if c in ("success", "cached", "custom_cost", "request_head_complete",
                 "response_head_complete") and value is not None:
            value = bool(value)
        out[c] = value
    out["created_at"] = ms_iso(int(rec["created_at"]))
    out["model"] = out.get("model") or ""
    if detail:
        codec = rec.get("body_codec")
        out["request_head"] = _head(rec.get("request_body"), codec, REQUEST)
        out["response_head"] = _head(rec.get("response_body"), codec, RESPONSE)
    return out


# ---------------------------------------------------------------- analytics

INTERVALS = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
_META_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_MAX_BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Analytics:
    start: int
    end: int
    interval: str
    group_by: str | None


def parse_analytics(q: Any, now_ms: int) -> Analytics:
    """`start`, `end` (ISO 8601), `interval` and `group_by` of `GET analytics`."""
    end = iso_ms(q["end"], "end") if q.get("end") else now_ms
    start = iso_ms(q["start"], "start") if q.get("start") else end - 86_400_000
    if start >= end:
        raise BadFilter("start: must be before end")
    interval = q.get("interval") or "hour"
    if interval not in INTERVALS:
        raise BadFilter("interval: must be minute, hour or day")
    if (end - start) // INTERVALS[interval] > _MAX_BUCKETS:
        raise BadFilter(f"interval: more than {_MAX_BUCKETS} buckets; use a longer interval")
    group_by = q.get("group_by") or None
    if group_by is not None and group_by not in ("provider", "model"):
        if not (group_by.startswith("metadata.") and _META_KEY.match(group_by[9:])):
            raise BadFilter("group_by: must be provider, model or metadata.KEY")
    return Analytics(start, end, interval, group_by)


def analytics_sql(a: Analytics, b: Binder, t: str, account: str,
                  gateway: str) -> tuple[str, bool]:
    """(SQL, grouped) for per-bucket sums; columns: bucket, [group], sums."""
    step = INTERVALS[a.interval]  # from the fixed table above, never from the client
    group = ""
    if a.group_by in ("provider", "model"):
        group = f"{t}.{a.group_by}"
    elif a.group_by:
        group = b.dialect.meta_get.format(t=t, p=b(a.group_by[9:]))
    sums = ("COUNT(*), "
            f"CAST(COALESCE(SUM(CASE WHEN {t}.success THEN 0 ELSE 1 END), 0) AS BIGINT), "
            f"CAST(COALESCE(SUM(CASE WHEN {t}.cached THEN 1 ELSE 0 END), 0) AS BIGINT), "
            f"CAST(COALESCE(SUM({t}.tokens_in), 0) AS BIGINT), "
            f"CAST(COALESCE(SUM({t}.tokens_out), 0) AS BIGINT), "
            f"CAST(COALESCE(SUM({t}.cost), 0) AS DOUBLE PRECISION)")
    cols = f"({t}.created_at / {step}) * {step}"
    if group:
        cols += f", CAST({group} AS TEXT)"
    where = (f"{t}.account = {b(account)} AND {t}.gateway = {b(gateway)} "
             f"AND {t}.created_at >= {b(a.start)} AND {t}.created_at < {b(a.end)}")
    n = 2 if group else 1
    grp = ", ".join(str(i) for i in range(1, n + 1))
    # no ORDER BY: analytics_result orders the rows the same way for both backends
    return f"SELECT {cols}, {sums} FROM {t} WHERE {where} GROUP BY {grp}", bool(group)


_SUM_KEYS = ("requests", "errors", "cached_requests", "tokens_in", "tokens_out", "cost")


def analytics_result(a: Analytics, records: Iterable[tuple[Any, ...]],
                     grouped: bool) -> dict[str, Any]:
    """Totals, per-group totals and the time series, as `GET analytics` returns them."""
    totals: dict[str, Any] = dict.fromkeys(_SUM_KEYS, 0)
    totals["cost"] = 0.0
    series: list[dict[str, Any]] = []
    groups: dict[Any, dict[str, Any]] = {}
    add: Callable[[dict[str, Any], tuple[Any, ...]], None] = _add
    # By bucket, then group by code point with no group (NULL) last, as on both backends
    # (their own NULL and text orders differ: SQLite puts NULL first, PostgreSQL last).
    if grouped:
        records = sorted(records, key=lambda r: (int(r[0]), r[1] is None, r[1] or ""))
    else:
        records = sorted(records, key=lambda r: int(r[0]))
    for rec in records:
        bucket = int(rec[0])
        sums = rec[2:] if grouped else rec[1:]
        point: dict[str, Any] = {"time": ms_iso(bucket)}
        if grouped:
            point["group"] = rec[1]
            g = groups.setdefault(rec[1], {"group": rec[1], **dict.fromkeys(_SUM_KEYS, 0)})
            add(g, sums)
        point.update(zip(_SUM_KEYS, (int(v) for v in sums[:5])))
        point["cost"] = float(sums[5])
        series.append(point)
        add(totals, sums)
    out: dict[str, Any] = {
        "start": ms_iso(a.start), "end": ms_iso(a.end), "interval": a.interval,
        "group_by": a.group_by, "totals": totals, "series": series,
    }
    if grouped:
        out["groups"] = sorted(groups.values(), key=lambda g: -g["requests"])
    return out


def _add(into: dict[str, Any], sums: tuple[Any, ...]) -> None:
    for key, value in zip(_SUM_KEYS[:5], sums[:5]):
        into[key] += int(value)
    into["cost"] += float(sums[5])
