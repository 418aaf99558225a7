#!/usr/bin/python3
"""Checks config/connwatch.schema.json against the project's configs.

Every shipped and good config must validate; every file of the bad-config
corpus (tests/configs/bad/*.yaml) must be rejected, by the YAML loader or by
the schema, unless it is listed in NOT_CATCHABLE with the reason a JSON
Schema cannot see its error. A new bad file that the schema misses therefore
fails here until it is classified, and so does a listed file that the schema
has learned to reject.

Run by CTest (config_schema_test) with Debian's python3 and its packages
python3-jsonschema and python3-yaml:
    /usr/bin/python3 tests/schema/check_schema.py [SOURCE_DIR]
"""

import glob
import json
import os
import re
import sys

try:
    import jsonschema
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"check_schema: {e}: install python3-jsonschema and python3-yaml (scripts/setup.sh)")

# Bad configs whose every error needs more than one value at a time, the
# file system, or another file: the schema accepts them, the daemon does not.
NOT_CATCHABLE = {
    "05-duplicate-names.yaml": "target names must be unique across targets (and files)",
    "20-include-loop.yaml": "which files a glob matches is known only on disk",
    "21-include-bad-file.yaml": "the errors are in the included files",
    "24-backoff-max-below-initial.yaml": "max >= initial compares two values, after inheritance",
    "53-shard-index-not-below-total.yaml": "index < total compares two values",
}
# Partly catchable: the schema rejects these files for some of their errors
# but cannot check the rest (kept here so the gap is written down).
PARTLY = {
    "07-bad-durations.yaml": "99999999999999y is well-formed but too large",
    "12-invalid-regex.yaml": "only the empty expect; RE2 syntax is not checked",
    "23-keepalive-range.yaml": "10h as keepalive.idle (over 32767s), user_timeout over 2^31 ms",
    "26-address-family.yaml": "an IPv4 literal address with address_family ip6",
    "27-source-address.yaml": "a source_address of the other family than the address",
}


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one map, as connwatchd
    and yaml-language-server do (PyYAML keeps the last one silently)."""


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(path):
    """The document of `path`, or raises yaml.YAMLError / UnicodeDecodeError."""
    with open(path, "rb") as f:
        data = f.read()
    return yaml.load(data.decode("utf-8"), Loader=StrictLoader)


def schema_keys(schema):
    """Every property path of the schema ("defaults", "keepalive.idle", ...),
    so docs/CONFIG.md can be compared with it."""
    keys = set()

    def walk(node, prefix):
        if isinstance(node, dict):
            if "$ref" in node:
                ref = node["$ref"].split("/")[-1]
                walk(schema["definitions"][ref], prefix)
            for name, sub in node.get("properties", {}).items():
                path = prefix + [name]
                for i in range(len(path)):
                    keys.add(".".join(path[i:]))
                walk(sub, path)
            for combinator in ("anyOf", "oneOf", "allOf"):
                for sub in node.get(combinator, []):
                    walk(sub, prefix)
            if "items" in node:
                walk(node["items"], prefix)

    walk(schema, [])
    return keys


def documented_keys(source):
    """The keys in the first column of docs/CONFIG.md's tables."""
    keys = []
    with open(os.path.join(source, "docs", "CONFIG.md")) as f:
        for line in f:
            m = re.match(r"^\| `([a-z_][a-z0-9_.]*)` \|", line)
            if m:
                keys.append(m.group(1))
    return keys


def main():
    source = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                             os.path.join(os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(source, "config", "connwatch.schema.json")) as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)

    passed, failed = 0, 0

    def result(ok, message):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL " + message)

    # A key added to the loader and documented, but not to the schema, would
    # make editors flag valid configs.
    known = schema_keys(schema)
    documented = documented_keys(source)
    result(len(documented) >= 20, f"only {len(documented)} keys found in docs/CONFIG.md tables")
    for key in documented:
        result(key in known, f"docs/CONFIG.md documents `{key}`, which the schema does not know")

    good = [os.path.join(source, p) for p in ("config/example.yaml", "config/demo.yaml")]
    good += sorted(glob.glob(os.path.join(source, "tests/configs/good/**/*.yaml"), recursive=True))
    packaged = os.path.join(source, "packaging/connwatch.yaml")
    if os.path.exists(packaged):
        good.append(packaged)
    for path in good:
        rel = os.path.relpath(path, source)
        try:
            errors = sorted(validator.iter_errors(load(path)), key=lambda e: list(e.path))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            result(False, f"{rel}: not valid YAML: {e}")
            continue
        result(not errors, f"{rel}: the schema rejects a good config:\n" +
               "\n".join(f"  {'/'.join(map(str, e.path))}: {e.message}" for e in errors))

    for path in (os.path.join(source, p) for p in ("config/example.yaml", "config/demo.yaml")):
        with open(path) as f:
            first = f.readline().strip()
        result(first == "# yaml-language-server: $schema=./connwatch.schema.json",
               f"{os.path.relpath(path, source)}: the first line should be the schema modeline, got {first!r}")

    bad = sorted(glob.glob(os.path.join(source, "tests/configs/bad/*.yaml")))
    result(len(bad) >= 35, f"only {len(bad)} bad configs found in tests/configs/bad")
    for path in bad:
        name = os.path.basename(path)
        try:
            errors = list(validator.iter_errors(load(path)))
            how = "schema" if errors else None
        except (yaml.YAMLError, UnicodeDecodeError, RecursionError):
            how = "yaml"
        if name in NOT_CATCHABLE:
            result(how is None, f"tests/configs/bad/{name} is rejected ({how}) but listed as not "
                   "catchable: remove it from NOT_CATCHABLE")
        else:
            result(how is not None, f"tests/configs/bad/{name}: the schema accepts it; make the "
                   "schema reject it, or add it to NOT_CATCHABLE with the reason")
        if how is not None or name in NOT_CATCHABLE:
            print(f"ok   {name}: {how or 'not catchable: ' + NOT_CATCHABLE[name]}")
    for name in list(NOT_CATCHABLE) + list(PARTLY):
        result(os.path.exists(os.path.join(source, "tests/configs/bad", name)),
               f"{name} is classified but no longer in tests/configs/bad")

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
