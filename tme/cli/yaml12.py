"""YAML as version 1.2 (and JSON) reads it, for what a person types to the CLI.

PyYAML reads YAML 1.1, whose booleans and numbers surprise in a task's params
and files (`ON` a boolean, `010` octal, `12:30` a number in base 60).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from tme.yaml_load import UniqueKeyLoader


class Yaml12Loader(UniqueKeyLoader):
    """YAML as 1.2 (and JSON) reads it. PyYAML's 1.1 also takes on, off, yes and no (any
    case) as booleans: `args=[ON]` sent true, which a serial command's choice of
    "ON"/"OFF" refuses. A bool field still takes "yes" (the API's validation reads it as
    true). Its numbers differ too: 1.1 reads `12:30` as 750 (base 60), `010` as 8 (octal)
    and `1_000` as 1000, where 1.2 keeps the first and last as text and reads 10."""


_YAML_1_1_ONLY = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_1_1_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# YAML 1.2's core schema: https://yaml.org/spec/1.2.2/#1032-tag-resolution
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _yaml_1_2_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """1.1's constructor would read a leading zero as octal and `:` as base 60."""
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _yaml_1_2_int)


def load_yaml(text: str) -> Any:
    """`text` read as YAML 1.2 (and JSON) reads it, refusing a repeated key."""
    return yaml.load(text, Loader=Yaml12Loader)
