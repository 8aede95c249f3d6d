#!/usr/bin/env python3
"""Checks the dependency graph against deny.toml: licenses, bans and sources.

cargo-deny cannot run in CI here (see deny.toml's header), so this reads the same policy
file and applies its licenses, bans and sources sections to `cargo metadata` for the
targets deny.toml names:

- licenses: every package's SPDX expression (or its [[licenses.clarify]] entry) must be
  satisfiable with the allowed licenses plus that crate's exceptions; `A/B` (old style)
  reads as `A OR B`; an exception clause (`WITH …`) is allowed when the whole clause or
  its license is;
- bans: a crate in [bans].deny must not be in the graph, or, with
  deny-multiple-versions, not in two versions; no registry dependency of the workspace
  may use a wildcard version (workspace crates by path may, with allow-wildcard-paths);
- sources: every package comes from an allowed registry or from this workspace.

Advisories need the RustSec database from GitHub, which this machine cannot reach: they
are listed, with their ignore reasons, in deny.toml and the README.

Usage: python3 scripts/supply-chain.py   (exit 0 when the graph keeps the policy)
"""

import json
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def metadata(target):
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline",
         "--filter-platform", target],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def tokens(expr):
    expr = expr.replace("/", " OR ")
    return re.findall(r"\(|\)|[A-Za-z0-9.+\-]+", expr)


def satisfiable(expr, allowed):
    """Whether the SPDX expression can be met using only `allowed` licenses."""
    toks = tokens(expr)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else None

    def take():
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def primary():
        if peek() == "(":
            take()
            value = disjunction()
            if take() != ")":
                raise ValueError(f"unbalanced parentheses in {expr!r}")
            return value
        lic = take()
        if peek() == "WITH":
            take()
            exception = take()
            return f"{lic} WITH {exception}" in allowed or lic in allowed
        return lic in allowed

    def conjunction():
        value = primary()
        while peek() == "AND":
            take()
            value = primary() and value
        return value

    def disjunction():
        value = conjunction()
        while peek() == "OR":
            take()
            value = conjunction() or value
        return value

    result = disjunction()
    if pos != len(toks):
        raise ValueError(f"cannot read license expression {expr!r}")
    return result


def crate_matches(spec, pkg):
    name, _, version = spec.partition("@")
    return pkg["name"] == name and (not version or pkg["version"] == version)


def main():
    policy = tomllib.loads((ROOT / "deny.toml").read_text())
    targets = policy.get("graph", {}).get("targets", ["x86_64-unknown-linux-gnu"])
    problems = []
    packages = {}
    for target in targets:
        meta = metadata(target)
        in_graph = {node["id"] for node in meta["resolve"]["nodes"]}
        for pkg in meta["packages"]:
            if pkg["id"] in in_graph:
                packages[pkg["id"]] = pkg
        workspace = set(meta["workspace_members"])

    # licenses
    lic = policy.get("licenses", {})
    allow = set(lic.get("allow", []))
    exceptions = defaultdict(set)
    for e in lic.get("exceptions", []):
        exceptions[e["crate"].partition("@")[0]].update(e["allow"])
    clarify = lic.get("clarify", [])
    for pkg in packages.values():
        if pkg["id"] in workspace:
            continue
        expr = pkg.get("license")
        for c in clarify:
            if crate_matches(c["crate"], pkg):
                expr = c["expression"]
        where = f'{pkg["name"]} {pkg["version"]}'
        if not expr:
            problems.append(f"license: {where} declares no license expression "
                            "(add a [[licenses.clarify]] entry after reading its files)")
            continue
        try:
            ok = satisfiable(expr, allow | exceptions[pkg["name"]])
        except (ValueError, IndexError) as e:
            problems.append(f"license: {where}: {e}")
            continue
        if not ok:
            problems.append(f"license: {where} is {expr!r}: not allowed by deny.toml")

    # bans
    bans = policy.get("bans", {})
    versions = defaultdict(set)
    for pkg in packages.values():
        versions[pkg["name"]].add(pkg["version"])
    for entry in bans.get("deny", []):
        name = entry["crate"].partition("@")[0]
        found = sorted(versions.get(name, ()))
        if not found:
            continue
        if entry.get("deny-multiple-versions"):
            if len(found) > 1:
                problems.append(f"bans: {name} is in the graph in {len(found)} versions "
                                f"({', '.join(found)}): keep one")
        else:
            problems.append(f"bans: {name} {', '.join(found)} is banned")
    if bans.get("wildcards") == "deny":
        for pkg in packages.values():
            if pkg["id"] not in workspace:
                continue
            for dep in pkg["dependencies"]:
                if dep.get("path") and bans.get("allow-wildcard-paths"):
                    continue  # a workspace crate, versioned with the workspace
                if dep["req"] == "*":
                    problems.append(f'bans: {pkg["name"]} depends on {dep["name"]} = "*"')

    # sources
    src = policy.get("sources", {})
    registries = {f"registry+{r}" for r in src.get("allow-registry", [])}
    for pkg in packages.values():
        source = pkg.get("source")
        if source is None:
            continue  # a path dependency: this workspace
        if source.startswith("git+") or source not in registries:
            problems.append(f'sources: {pkg["name"]} {pkg["version"]} comes from {source}')

    dupes = sum(1 for v in versions.values() if len(v) > 1)
    print(f"supply chain: {len(packages)} packages for {', '.join(targets)}; "
          f"{len(allow)} licenses allowed, {sum(len(v) for v in exceptions.values())} "
          f"exceptions; {len(bans.get('deny', []))} bans; {dupes} crates in two or more "
          f"versions (tolerated: none of them banned)")
    print("supply chain: advisories are not checked here (the RustSec database is on "
          "GitHub); known ones: deny.toml [advisories] and the README")
    if problems:
        for p in problems:
            print(f"supply chain: FAIL: {p}", file=sys.stderr)
        return 1
    print("supply chain: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
