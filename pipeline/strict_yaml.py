"""YAML for ``params.yaml`` and ``-S`` values: strict, bounded, every problem one line.

Plain ``yaml.safe_load`` keeps the last of two equal keys silently (a second ``tune:`` block
replaces the first), and expands an alias bomb into hundreds of millions of values that
any error message would then echo. Kept free of heavy imports, like ``pipeline.config``.
"""

from __future__ import annotations

from typing import Any

import yaml

from pipeline.errors import ConfigError, shorten

# Values after expanding YAML aliases: the shipped file has a few hundred; an alias bomb has millions.
MAX_YAML_VALUES = 100_000


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """The same key twice in one mapping (plain YAML keeps the last one silently)."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping.

    ``node_paths`` (filled by ``load_yaml`` before construction) names each mapping by its dotted
    key path, so the error can say ``tune.factor`` rather than just ``factor``.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.node_paths: dict[int, str] = {}

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Checked before SafeLoader flattens merge keys (<<), which may legitimately override.
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                parent = self.node_paths.get(id(node), "")
                dotted = f"{parent}.{key}" if parent else str(key)
                raise DuplicateKeyError(None, None, f"{shorten(dotted)}: duplicate key at line {line} (first at line "
                                                    f"{seen[key]}); allowed: each key once", key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _measure(node: yaml.Node, path: str, loader: StrictLoader, memo: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` expands to (aliases counted every time they are used), without expanding.

    Memoized by node identity, so an alias bomb is measured in time proportional to its text.
    """
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_nodes:
        raise ConfigError(f"line {node.start_mark.line + 1}: an alias refers to itself; allowed: plain values")
    open_nodes.add(key)
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_measure(child, path, loader, memo, open_nodes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        loader.node_paths.setdefault(key, path)
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
            size += _measure(key_node, path, loader, memo, open_nodes)
            size += _measure(value_node, f"{path}.{name}" if path else str(name), loader, memo, open_nodes)
    open_nodes.discard(key)
    memo[key] = size
    return size


def load_yaml(text: str, source: str, root: str = "") -> Any:
    """Parse ``text`` strictly: no duplicate keys, no alias bombs, every problem one bounded line.

    ``root``: the dotted key the text is the value of (an override), to name keys in messages.
    """
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _measure(node, root, loader, {}, set())
        if size > MAX_YAML_VALUES:
            raise ConfigError(f"{source}: anchors and aliases expand to {size:,} values; allowed: at most "
                              f"{MAX_YAML_VALUES:,} (a params file of ordinary size)")
        return loader.construct_document(node)
    except ConfigError as error:
        raise ConfigError([line if line.startswith(source) else f"{source}: {line}" for line in error.lines]) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        if isinstance(error, DuplicateKeyError):
            raise ConfigError(f"{source}: {problem}") from None
        raise ConfigError(f"{source}: not valid YAML{where}: {shorten(problem)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply; allowed: the sections and keys of params.yaml") from None
    finally:
        loader.dispose()
