"""HTTPRoute filters (URLRewrite, Request/ResponseHeaderModifier) and the path and header checks they share.

A filter this build cannot apply, or one written wrongly, must not be skipped:
Gateway API requires requests of that rule to get an error instead of being
forwarded unfiltered. So any filter problem turns the rule into a direct 500
(`RuleFilters.error`) besides the Problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.gatewayapi.hostnames import hostname_problem
from controlplane.ir import HeaderModIR, RedirectIR, RewriteIR

Fail = Callable[[str, str, str], None]  # (field, message, reason)

# Gateway API HTTPPathMatch / HTTPPathModifier values (its CEL rules).
_PATH = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,256}$")
_UNSUPPORTED = ("RequestMirror", "CORS", "ExtensionRef", "ExternalAuth")
# Gateway API HTTPRequestRedirectFilter.statusCode values.
REDIRECT_STATUSES = (301, 302, 303, 307, 308)


def path_problem(value: Any) -> str | None:
    """Why `value` is not an absolute, normalized HTTP path (None: it is one)."""
    if not isinstance(value, str) or not value.startswith("/"):
        return "must be a string starting with /"
    if not _PATH.match(value):
        return f"{value!r} has characters a path cannot have (?, #, spaces, ...)"
    if any(s in value for s in ("//", "/./", "/../")) or value.endswith(("/.", "/..")) or "%2f" in value.lower():
        return f"{value!r} must be a normalized path (no //, /./, /../ or %2F)"
    return None


def header_name_problem(value: Any) -> str | None:
    if not isinstance(value, str) or not _HEADER_NAME.match(value):
        return "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"
    return None


@dataclass(frozen=True)
class RuleFilters:
    rewrite: RewriteIR | None = None
    request_headers: HeaderModIR | None = None
    response_headers: HeaderModIR | None = None
    redirect: RedirectIR | None = None
    error: str = ""  # non-empty: the rule cannot be served as written and answers 500


def parse_filters(raw: Any, *, fld: str, fail: Fail) -> RuleFilters:
    if raw is None:
        return RuleFilters()
    if not isinstance(raw, list):
        fail(f"{fld}.filters", "must be a list", "Invalid")
        return RuleFilters(error="has invalid filters")
    rewrite: RewriteIR | None = None
    redirect: RedirectIR | None = None
    mods: dict[str, HeaderModIR] = {}
    errors: list[str] = []
    seen: set[str] = set()
    for i, flt in enumerate(raw):
        ff = f"{fld}.filters[{i}]"
        ftype = flt.get("type") if isinstance(flt, Mapping) else None
        if not isinstance(ftype, str) or not ftype:
            fail(f"{ff}.type", "is required", "Invalid")
            errors.append("has an invalid filter")
            continue
        if ftype in seen:
            fail(f"{ff}.type", f"{ftype} may appear only once in a rule", "Invalid")
            errors.append("has an invalid filter")
            continue
        seen.add(ftype)
        assert isinstance(flt, Mapping)
        if ftype == "URLRewrite":
            rewrite = _url_rewrite(flt.get("urlRewrite"), f"{ff}.urlRewrite", fail)
            if rewrite is None:
                errors.append("has an invalid URLRewrite filter")
        elif ftype == "RequestRedirect":
            redirect = _redirect(flt.get("requestRedirect"), f"{ff}.requestRedirect", fail)
            if redirect is None:
                errors.append("has an invalid RequestRedirect filter")
        elif ftype in ("RequestHeaderModifier", "ResponseHeaderModifier"):
            key = ftype[0].lower() + ftype[1:]
            mod = _header_mod(flt.get(key), f"{ff}.{key}", fail)
            if mod is None:
                errors.append(f"has an invalid {ftype} filter")
            else:
                mods[ftype] = mod
        else:
            known = "is not supported by this build" if ftype in _UNSUPPORTED else "is not a known filter type"
            fail(f"{ff}.type", f"filter {ftype!r} {known}", "UnsupportedValue")
            errors.append(f"uses filter {ftype}, which this gateway does not support")
    if redirect is not None and rewrite is not None:
        fail(f"{fld}.filters", "RequestRedirect and URLRewrite cannot be used in the same rule", "Invalid")
        errors.append("has both RequestRedirect and URLRewrite")
    return RuleFilters(
        rewrite=rewrite,
        redirect=redirect,
        request_headers=mods.get("RequestHeaderModifier"),
        response_headers=mods.get("ResponseHeaderModifier"),
        error=errors[0] if errors else "",
    )


def _redirect(spec: Any, fld: str, fail: Fail) -> RedirectIR | None:
    """HTTPRequestRedirectFilter: scheme, hostname, path, port, statusCode (all optional)."""
    if not isinstance(spec, Mapping):
        fail(fld, "is required (a mapping with scheme, hostname, path, port and/or statusCode)", "Invalid")
        return None
    for key in spec:
        if key not in ("scheme", "hostname", "path", "port", "statusCode"):
            fail(f"{fld}.{key}", "is not a RequestRedirect field", "Invalid")
            return None
    scheme = spec.get("scheme")
    if scheme is not None and scheme not in ("http", "https"):
        fail(f"{fld}.scheme", f"must be http or https, got {scheme!r}", "Invalid")
        return None
    hostname = spec.get("hostname")
    if hostname is not None and (why := hostname_problem(hostname, wildcard=False)):
        fail(f"{fld}.hostname", why, "Invalid")
        return None
    port = spec.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        fail(f"{fld}.port", "must be a port number (1-65535)", "Invalid")
        return None
    status = spec.get("statusCode", 302)
    if status not in REDIRECT_STATUSES:
        fail(f"{fld}.statusCode", f"must be one of {', '.join(map(str, REDIRECT_STATUSES))}", "UnsupportedValue")
        return None
    path = spec.get("path")
    if path is None:
        return RedirectIR(scheme=scheme, hostname=hostname, port=port, status=status)
    rewrite = _url_rewrite({"path": path}, fld, fail)
    if rewrite is None:
        return None
    return RedirectIR(
        scheme=scheme,
        hostname=hostname,
        port=port,
        prefix=rewrite.prefix,
        full_path=rewrite.full_path,
        status=status,
    )


def _url_rewrite(spec: Any, fld: str, fail: Fail) -> RewriteIR | None:
    if not isinstance(spec, Mapping):
        fail(fld, "is required (a mapping with hostname and/or path)", "Invalid")
        return None
    hostname = spec.get("hostname")
    if hostname is not None and (why := hostname_problem(hostname, wildcard=False)):
        fail(f"{fld}.hostname", why, "Invalid")
        return None
    path = spec.get("path")
    if path is None:
        return RewriteIR(hostname=hostname)
    if not isinstance(path, Mapping):
        fail(f"{fld}.path", "must be a mapping with type and its value", "Invalid")
        return None
    ptype = path.get("type")
    if ptype == "ReplaceFullPath":
        value = path.get("replaceFullPath")
        if why := path_problem(value):
            fail(f"{fld}.path.replaceFullPath", why, "Invalid")
            return None
        return RewriteIR(full_path=value, hostname=hostname)
    if ptype == "ReplacePrefixMatch":
        value = path.get("replacePrefixMatch", "")
        if value != "" and (why := path_problem(value)):
            fail(f"{fld}.path.replacePrefixMatch", why, "Invalid")
            return None
        return RewriteIR(prefix=value, hostname=hostname)
    fail(f"{fld}.path.type", f"must be ReplacePrefixMatch or ReplaceFullPath, got {ptype!r}", "Invalid")
    return None


def _header_mod(spec: Any, fld: str, fail: Fail) -> HeaderModIR | None:
    if not isinstance(spec, Mapping):
        fail(fld, "is required (a mapping with set, add and/or remove)", "Invalid")
        return None
    ok = True

    def check_name(at: str, name: Any) -> bool:
        nonlocal ok
        why = header_name_problem(name)
        if why is None and str(name).lower() == "host":
            why, reason = "the Host header cannot be modified here (use URLRewrite hostname)", "UnsupportedValue"
        else:
            reason = "Invalid"
        if why:
            fail(at, why, reason)
            ok = False
        return why is None

    def pairs(key: str) -> tuple[tuple[str, str], ...]:
        nonlocal ok
        items = spec.get(key) or []
        if not isinstance(items, list):
            fail(f"{fld}.{key}", "must be a list of {name, value}", "Invalid")
            ok = False
            return ()
        out = []
        for i, item in enumerate(items):
            at = f"{fld}.{key}[{i}]"
            if not isinstance(item, Mapping):
                fail(at, "must be a mapping with name and value", "Invalid")
                ok = False
                continue
            if not check_name(f"{at}.name", item.get("name")):
                continue
            value = item.get("value")
            if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
                fail(f"{at}.value", "must be a string without CR, LF or NUL", "Invalid")
                ok = False
                continue
            out.append((str(item["name"]), value))
        return tuple(out)

    set_, add = pairs("set"), pairs("add")
    remove = spec.get("remove") or []
    if not isinstance(remove, list):
        fail(f"{fld}.remove", "must be a list of header names", "Invalid")
        return None
    names = tuple(str(r) for i, r in enumerate(remove) if check_name(f"{fld}.remove[{i}]", r))
    return HeaderModIR(set=set_, add=add, remove=names) if ok else None
