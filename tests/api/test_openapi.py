#!/usr/bin/env python3
"""Checks docs/api/openapi.yaml against the route table the binary prints.

Usage: test_openapi.py --bin PATH/TO/coffer --src PATH/TO/SOURCE/ROOT

`coffer routes` prints one "METHOD PATH ROLES IDEMPOTENT" line per route. ROLES is "public" or a
comma-separated list of customer, merchant, support, risk, admin, auditor and operator (the
operator token, which only creates the first admin). The document is read with a small
line-based parser (standard library only): under `paths:` a path key is indented by exactly 2
spaces and a method key by exactly 4; an operation's own keys are indented by 6. Checks:

  - every `coffer routes` line is well formed and names only known roles;
  - the (method, path) pairs of the document and of the route table are the same set;
  - every operation has an `x-coffer-roles` extension (`public`, or a flow list such as
    `[admin, auditor]`) naming exactly the roles the route table gives it;
  - every operation's security matches its roles: public routes have `security: []`, operator
    routes require the `operatorToken` scheme only, and every other route the `sessionToken`
    scheme only (the operation's own `security`, or the document's default);
  - every route that is not public documents its 401 and 403 answers (the server's
    authorization gives both);
  - a route documents an Idempotency-Key header exactly when the route table marks it
    idempotent; such a route is a POST, and the header is required on every one except
    /v1/ledger/transfers/batch.

Prints one PASS/FAIL line per check and ends with "N passed, M failed"; exits 1 on failure.
"""
import argparse
import os
import re
import subprocess
import sys

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PATH_KEY = re.compile(r"^  (/[^\s:]*):\s*$")
METHOD_KEY = re.compile(r"^    ([a-z]+):\s*$")
TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*:")
REF = re.compile(r"""^\s*-?\s*\$ref:\s*['"]?#/components/parameters/([\w.-]+)['"]?\s*$""")
IDEM_OPTIONAL_PATH = "/v1/ledger/transfers/batch"
ROLES = ("customer", "merchant", "support", "risk", "admin", "auditor", "operator")
PUBLIC = "public"
SESSION_SCHEME = "sessionToken"
OPERATOR_SCHEME = "operatorToken"
SCHEME_NAME = re.compile(r"^-\s*\{?\s*([\w.-]+)\s*:")


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def meaningful(lines):
    """Lines that are neither blank nor comments, with their text."""
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield line.rstrip("\n")


def top_section(lines, name):
    """The lines of a top-level `name:` block, without the key line."""
    out, inside = [], False
    for line in lines:
        if TOP_KEY.match(line):
            inside = line.startswith(name + ":")
            continue
        if inside:
            out.append(line)
    return out


def parse_operations(lines):
    """{(METHOD, path): [lines of the operation]} from the `paths:` section."""
    ops = {}
    path, current = None, None
    for line in meaningful(top_section(lines, "paths")):
        m = PATH_KEY.match(line)
        if m:
            path, current = m.group(1), None
            continue
        m = METHOD_KEY.match(line)
        if m and path is not None and m.group(1) in METHODS:
            current = []
            ops[(m.group(1).upper(), path)] = current
            continue
        if indent_of(line) <= 4:
            current = None  # a path-level key such as `parameters:` or `summary:`
            continue
        if current is not None:
            current.append(line)
    return ops


def block_after(lines, key, indent):
    """The lines nested under the first `key:` found at exactly `indent` spaces, or None."""
    for i, line in enumerate(lines):
        if indent_of(line) == indent and line.strip().startswith(key + ":"):
            value = line.strip()[len(key) + 1:].strip()
            body = []
            for nxt in lines[i + 1:]:
                if indent_of(nxt) <= indent and not nxt.strip().startswith("- "):
                    break
                if indent_of(nxt) < indent:
                    break
                body.append(nxt)
            return value, body
    return None


def parse_components_parameters(lines):
    """{name: {field: value}} for scalar fields of each components/parameters entry."""
    params = block_after(list(meaningful(top_section(lines, "components"))), "parameters", 2)
    out = {}
    if params is None:
        return out
    current = None
    for line in params[1]:
        if indent_of(line) == 4 and line.strip().endswith(":"):
            current = out.setdefault(line.strip()[:-1], {})
        elif indent_of(line) == 6 and current is not None and ":" in line:
            key, _, value = line.strip().partition(":")
            current[key.strip()] = value.strip().strip("'\"")
    return out


def security_schemes(value, body):
    """The scheme names of a security requirement list: its inline value and nested lines.
    `[]` (or nothing) is the empty list: no credentials."""
    names = set()
    value = value.strip()
    if value.startswith("[") and value != "[]":
        for item in value.strip("[]").split(","):
            name = item.strip().strip("{}").partition(":")[0].strip()
            if name:
                names.add(name)
    for line in body:
        m = SCHEME_NAME.match(line.strip())
        if m:
            names.add(m.group(1))
    return names


def parse_default_security(lines):
    """The scheme names of the document's top-level security requirement (empty when none)."""
    body = list(meaningful(top_section(lines, "security")))
    return security_schemes("", body)


def op_security(op_lines):
    """The scheme names an operation requires, or None when it has no `security` key."""
    found = block_after(op_lines, "security", 6)
    if found is None:
        return None
    value, body = found
    return security_schemes(value, body)


def op_roles(op_lines):
    """The set of names in the operation's `x-coffer-roles`, or None when it has none."""
    for line in op_lines:
        if indent_of(line) == 6 and line.strip().startswith("x-coffer-roles:"):
            value = line.strip()[len("x-coffer-roles:"):].strip()
            if value.startswith("[") and value.endswith("]"):
                return {v.strip().strip("'\"") for v in value[1:-1].split(",") if v.strip()}
            return {value.strip("'\"")} if value else set()
    return None


def op_responses(op_lines):
    """The status codes listed under the operation's `responses`."""
    found = block_after(op_lines, "responses", 6)
    if found is None:
        return set()
    return {l.strip().split(":")[0].strip("'\"") for l in found[1] if indent_of(l) == 8}


def op_idempotency(op_lines, components):
    """None when the operation has no Idempotency-Key header, else whether it is required."""
    found = block_after(op_lines, "parameters", 6)
    if found is None:
        return None
    _, body = found
    entries, current = [], None
    for line in body:
        stripped = line.strip()
        if indent_of(line) == 8 and stripped.startswith("- "):
            current = {}
            entries.append(current)
            stripped = stripped[2:]
        elif indent_of(line) != 10 or current is None:
            continue
        m = REF.match(stripped)
        if m:
            current.update(components.get(m.group(1), {}))
        elif ":" in stripped:
            key, _, value = stripped.partition(":")
            current[key.strip()] = value.strip().strip("'\"")
    for p in entries:
        if p.get("name", "").lower() == "idempotency-key" and p.get("in") == "header":
            return p.get("required") == "true"
    return None


def read_routes(binary):
    out = subprocess.run([binary, "routes"], check=True, capture_output=True, text=True).stdout
    routes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 4:
            raise ValueError("unexpected `coffer routes` line: %r" % line)
        method, path, roles, idem = parts
        names = set(roles.split(","))
        if roles != PUBLIC and not names <= set(ROLES):
            raise ValueError("unknown role in `coffer routes` line: %r" % line)
        if idem not in ("idempotent", "-"):
            raise ValueError("unexpected idempotency column: %r" % line)
        routes[(method, path)] = {"roles": names, "idempotent": idem == "idempotent"}
    return routes


def want_schemes(roles):
    """The security schemes a route with these roles must require."""
    if roles == {PUBLIC}:
        return set()
    if roles == {"operator"}:
        return {OPERATOR_SCHEME}
    return {SESSION_SCHEME}


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, why=""):
        if ok:
            self.passed += 1
            print("PASS " + what)
        else:
            self.failed += 1
            print("FAIL " + what + (": " + why if why else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True, help="the coffer binary")
    ap.add_argument("--src", required=True, help="the source tree's root")
    args = ap.parse_args()

    rep = Report()
    doc_path = os.path.join(args.src, "docs", "api", "openapi.yaml")
    with open(doc_path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    try:
        routes = read_routes(args.bin)
    except (OSError, subprocess.CalledProcessError, ValueError) as e:
        rep.check(False, "run %s routes" % args.bin, str(e))
        routes = {}
    ops = parse_operations(lines)
    components = parse_components_parameters(lines)
    default_security = parse_default_security(lines)

    rep.check(len(routes) > 0, "coffer routes prints routes (%d)" % len(routes))
    rep.check(len(ops) > 0, "openapi.yaml has operations under paths: (%d)" % len(ops))
    missing = sorted(set(routes) - set(ops))
    extra = sorted(set(ops) - set(routes))
    rep.check(not missing, "every route is documented",
              ", ".join("%s %s" % r for r in missing))
    rep.check(not extra, "every documented operation is a route",
              ", ".join("%s %s" % r for r in extra))

    for key in sorted(set(routes) & set(ops)):
        method, path = key
        route, op = routes[key], ops[key]
        label = "%s %s" % (method, path)
        roles_text = ",".join(sorted(route["roles"]))
        documented = op_roles(op)
        rep.check(documented == route["roles"], "%s x-coffer-roles is %s" % (label, roles_text),
                  "documented %s" % (",".join(sorted(documented)) if documented is not None
                                     else "nothing"))
        sec = op_security(op)
        effective = sec if sec is not None else default_security
        want = want_schemes(route["roles"])
        rep.check(effective == want, "%s security requires %s" % (
            label, ", ".join(sorted(want)) or "nothing"),
            "documented %s" % (", ".join(sorted(effective)) or "nothing"))
        if route["roles"] != {PUBLIC}:
            missing_status = {"401", "403"} - op_responses(op)
            rep.check(not missing_status, "%s documents 401 and 403" % label,
                      "missing " + ", ".join(sorted(missing_status)))
        idem = op_idempotency(op, components)
        if route["idempotent"]:
            rep.check(method == "POST", "%s is idempotent and a POST" % label)
            rep.check(idem is not None, "%s documents Idempotency-Key" % label)
            if idem is not None:
                want_required = path != IDEM_OPTIONAL_PATH
                rep.check(idem == want_required, "%s Idempotency-Key is %s" % (
                    label, "required" if want_required else "optional"))
        else:
            rep.check(idem is None, "%s does not document Idempotency-Key" % label,
                      "the route table does not take one")

    print("%d passed, %d failed" % (rep.passed, rep.failed))
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
