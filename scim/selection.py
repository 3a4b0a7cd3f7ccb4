"""`attributes` and `excludedAttributes` (RFC 7644 §3.9): which attributes of a resource a response
returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from scim.resource_type import ResourceType


def select_attributes(
    resource_type: ResourceType,
    document: dict[str, Any],
    include: Iterable[Any] | None,
    exclude: Iterable[Any] | None,
) -> dict[str, Any]:
    """RFC 7644 §3.9 `attributes` / `excludedAttributes` on a rendered resource. `schemas` and `id` are
    always returned; unknown names are ignored. The paths are `scim.filter_tree.AttrPath`s. With neither, the
    document itself: most requests select nothing, and copying it was measurable."""
    include, exclude = list(include or ()), list(exclude or ())
    if not include and not exclude:
        return document
    # (extension URN or None, attribute name) -> the sub-attributes named, or None for the whole attribute
    tree: dict[tuple[str | None, str], set[str] | None] = {}
    for path in include or exclude:
        whole = resource_type.extension_at(path.schema, path.name) if path.sub is None else None
        if whole is not None:
            tree[(None, whole.id)] = None  # the extension's object is a member of the document itself
            continue
        resolved = resource_type.resolve(path.schema, path.name, path.sub)
        if resolved is None:
            continue
        key = (resolved.extension, resolved.attribute.name)
        if resolved.sub_attribute is None:
            tree[key] = None
        elif key not in tree or tree[key] is not None:
            tree.setdefault(key, set()).add(resolved.sub_attribute.name)  # type: ignore[union-attr]
    if include:
        return _keep(document, tree)
    return _drop(document, tree)


def _keep(
    document: Mapping[str, Any], tree: Mapping[tuple[str | None, str], set[str] | None]
) -> dict[str, Any]:
    selected: dict[str, Any] = {key: document[key] for key in ("schemas", "id") if key in document}
    for (extension, name), subs in tree.items():
        source = document.get(extension, {}) if extension else document
        if not isinstance(source, dict) or name not in source:
            continue
        target = selected.setdefault(extension, {}) if extension else selected
        target[name] = source[name] if subs is None else _pick(source[name], subs, keep=True)
    return selected


def _drop(
    document: Mapping[str, Any], tree: Mapping[tuple[str | None, str], set[str] | None]
) -> dict[str, Any]:
    result = dict(document)
    for (extension, name), subs in tree.items():
        if extension is None and name in ("id", "schemas"):
            continue  # returned always
        source = result.get(extension) if extension else result
        if not isinstance(source, dict) or name not in source:
            continue
        if extension:
            target = result[extension] = dict(source)
        else:
            target = result
        if subs is None:
            del target[name]
        else:
            target[name] = _pick(target[name], subs, keep=False)
    return result


def _pick(value: Any, subs: set[str], keep: bool) -> Any:
    """Keep (or drop) the named sub-attributes of a complex value, or of each of a multi-valued one's values."""
    if isinstance(value, list):
        return [_pick(item, subs, keep) for item in value if isinstance(item, dict)]
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if (key in subs) == keep}
    return value
