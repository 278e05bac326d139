"""Azure Functions HTTP route templates, matched the way the Functions host matches them.

Supported: literal segments, `{name}`, `{name?}` (optional, trailing), `{name:constraint}`
(int, long, alpha, bool, guid, datetime, decimal, double, float accepted as in ASP.NET
route constraints) and the catch-all `{*name}`. Literal segments win over parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PARAM = re.compile(
    r"^\{(?P<star>\*)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<constraint>[a-z]+))?(?P<optional>\?)?\}$"
)

_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "alpha": r"[A-Za-z]+",
    "bool": r"(?i:true|false)",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "datetime": r"[0-9T:\-\.+Z]+",
    "decimal": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
}


class RouteTemplateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    template: str
    pattern: re.Pattern[str]
    precedence: tuple[int, ...]
    first_literal: str | None
    """The first segment when it is literal ('' for the empty route), else None."""

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path.strip("/"))
        if found is None:
            return None
        return {k: v for k, v in found.groupdict().items() if v is not None}


def compile_route(template: str) -> CompiledRoute:
    segments = [s for s in template.strip("/").split("/") if s] if template.strip("/") else []
    regex = ""
    precedence: list[int] = []
    for index, segment in enumerate(segments):
        param = _PARAM.match(segment)
        separator = "/" if index else ""
        if param is None:
            if "{" in segment or "}" in segment:
                raise RouteTemplateError(f"route {template!r}: unsupported segment {segment!r}")
            regex += re.escape(separator + segment)
            precedence.append(0)
            continue
        name, constraint = param["name"], param["constraint"]
        if param["star"]:
            if index != len(segments) - 1:
                raise RouteTemplateError(f"route {template!r}: catch-all must be last")
            regex += f"(?:{re.escape(separator)}(?P<{name}>.*))?"
            precedence.append(4)
            continue
        if constraint and constraint not in _CONSTRAINTS:
            raise RouteTemplateError(f"route {template!r}: unknown constraint {constraint!r}")
        body = _CONSTRAINTS.get(constraint or "", r"[^/]+")
        if param["optional"]:
            if index != len(segments) - 1:
                raise RouteTemplateError(f"route {template!r}: optional parameter must be last")
            regex += f"(?:{re.escape(separator)}(?P<{name}>{body}))?"
            precedence.append(3)
        else:
            regex += f"{re.escape(separator)}(?P<{name}>{body})"
            precedence.append(1 if constraint else 2)
    first_literal: str | None = ""
    if segments:
        first_literal = segments[0] if precedence[0] == 0 else None
    return CompiledRoute(template, re.compile(regex), tuple(precedence), first_literal)
