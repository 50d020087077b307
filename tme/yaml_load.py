"""YAML as TME reads its files: a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a second `http:` block at the
end of override.yaml dropped the first block's settings, and a point written twice in a
device profile kept only the second limits. Refused instead, naming both lines, through
the `yaml.YAMLError` every reader already reports with the file and the place.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *base`: its keys may be overridden, by design


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping."""

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, MappingNode):
            first_line: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first_line.get(key)
                except TypeError:  # not hashable: the base class says so
                    continue
                if seen is not None:
                    raise ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found key {key!r} twice (first at line {seen + 1}): the second"
                        " would replace the first",
                        key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type]


def safe_load(text: str) -> Any:
    """yaml.safe_load, refusing a repeated key."""
    return yaml.load(text, Loader=UniqueKeyLoader)
