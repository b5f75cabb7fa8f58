"""Reading recipes: YAML, `extends:` chains, and pydantic's errors turned into one line that
names the file, the field and what is allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.tools import llama_types as lt
from orchestrator.errors import RecipeError
from orchestrator.recipe.model import Recipe, FieldError


def load_recipe(path: Path) -> Recipe:
    data = load_yaml(path, chain=())
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise _as_recipe_error(path, exc) from None


MAX_BYTES = 1 << 20    # a recipe is a page of YAML; a megabyte is not one
MAX_NODES = 20_000     # values after aliases are expanded: a recipe of 50 weights × 20 pairs has ~1,000


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses a document whose aliases expand it beyond MAX_NODES values (an alias bomb
    is a few hundred bytes that pydantic and any message would walk billions of times)."""

    def construct_document(self, node):
        sizes: dict[int, int] = {}

        def size(n) -> int:
            if id(n) in sizes:
                return sizes[id(n)]
            sizes[id(n)] = 1  # a recursive alias counts once: yaml refuses to construct it anyway
            total = 1
            if isinstance(n, yaml.SequenceNode):
                total += sum(size(c) for c in n.value)
            elif isinstance(n, yaml.MappingNode):
                total += sum(size(k) + size(v) for k, v in n.value)
            sizes[id(n)] = total = min(total, MAX_NODES + 1)
            return total

        if size(node) > MAX_NODES:
            raise yaml.YAMLError(f"its aliases expand it beyond {MAX_NODES:,} values (an alias bomb?)")
        return super().construct_document(node)


def load_yaml(path: Path, chain: tuple[Path, ...]) -> dict:
    if not path.is_file():
        raise RecipeError(str(path), "", "no such recipe file" if not path.exists() else "not a regular file")
    if path.stat().st_size > MAX_BYTES:
        raise RecipeError(str(path), "", f"{path.stat().st_size:,} bytes; a recipe is at most {MAX_BYTES:,}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise RecipeError(str(path), "", f"not valid YAML: {where}{getattr(exc, 'problem', exc)}") from None
    except UnicodeDecodeError:
        raise RecipeError(str(path), "", "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise RecipeError(str(path), "", "a recipe is a YAML mapping (name:, model:, weights:, …)")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise RecipeError(str(path), "extends", "give the path of one base recipe")
    base_path = (path.parent / parent).resolve()
    if not base_path.is_file():
        raise RecipeError(str(path), "extends", f"{parent}: no such recipe file")
    if base_path in chain or base_path == path.resolve():
        raise RecipeError(str(path), "extends", f"cycle through {parent}")
    return _merge(load_yaml(base_path, chain + (path.resolve(),)), data)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _as_recipe_error(path: Path, exc: ValidationError) -> RecipeError:
    err = exc.errors()[0]
    loc = _loc(err["loc"])
    ctx_err = (err.get("ctx") or {}).get("error")
    if isinstance(ctx_err, FieldError):
        loc, msg = ctx_err.field, str(ctx_err)
    elif err["type"] == "extra_forbidden":
        parent = err["loc"][:-1]
        allowed = _fields_at(parent)
        msg = f"unknown field; {lt.suggest(str(err['loc'][-1]), allowed)}allowed: {', '.join(allowed)}"
    elif err["type"] == "missing":
        msg = "required field is missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("literal_error", "int_parsing", "int_type", "float_parsing", "bool_parsing",
                           "greater_than_equal", "greater_than", "too_short", "list_type", "dict_type"):
            msg += f" (got {_short(err.get('input'))})"
    more = len({_loc(e["loc"]) for e in exc.errors()}) - 1
    return RecipeError(str(path), loc, msg + (f" (and {more} more error{'s' * (more > 1)})" if more else ""))


def _short(value) -> str:
    """A value as a message shows it: at most a line, whatever the recipe holds."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxstring, r.maxother = 2, 4, 4, 60, 60
    return r.repr(value)


_TYPE_TAGS = {"int", "str", "float", "bool", "dict", "list", "tuple", "none", "is-instance"}


def _loc(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "[" in str(p) or str(p).startswith("function-") or p in _TYPE_TAGS:
            continue  # union members and validators pydantic names in the location
        else:
            out += ("." if out else "") + str(p)
    return out


def _fields_at(loc) -> list[str]:
    model: Any = Recipe
    for part in loc:
        if isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            break
        model = _model_of(info.annotation)
    return sorted(getattr(model, "model_fields", {}))


def _model_of(annotation):
    for cand in getattr(annotation, "__args__", ()) or (annotation,):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
        inner = _model_of(cand) if getattr(cand, "__args__", None) else None
        if inner is not None:
            return inner
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
