#!/usr/bin/python3
"""Runs the PromQL of the docs through `promtool test rules`.

Collects, from README.md and docs/*.md:
  - every ```promql block (one expression each, also indented in a list);
  - every inline `code` span that uses vector matching or grouping
    (`on (`, `by (`, `group_left`...), which must be a whole expression;
  - the `expr` of every rule in a ```yaml block marked
    <!-- doc-test: prometheus-rules --> (also `promtool check rules`);
and checks every ```yaml block marked <!-- doc-test: prometheus-config -->
with `promtool check config`.

Each expression must have its expected samples in tests/docs/promql_examples.yml,
evaluated against series from two watchers (two `instance`s scraping the same
targets), and every expression listed there must still be in the docs. To
show that the series can catch the classic mistake, a join on `target` alone
must fail against them.

Usage: promql_examples.py SOURCE_DIR PROMTOOL   (exit 0 pass, 1 fail)
"""

import glob
import os
import re
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"promql_examples: {e}: install python3-yaml (scripts/setup.sh)")

FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
MARKER = re.compile(r"^\s*<!-- doc-test: ([a-z-]+) -->\s*$")
INLINE = re.compile(r"`([^`\n]+)`")
PROMQL_SYNTAX = re.compile(r"\b(on|by|ignoring|without) \(|\bgroup_(left|right)\b")


def normalize(expr):
    return " ".join(expr.split())


def scan(path, rel):
    """(expressions, rule blocks, config blocks) of one Markdown file."""
    exprs, rules, configs = [], [], []
    with open(path) as f:
        lines = f.read().split("\n")
    marker, i = None, 0
    while i < len(lines):
        line = lines[i]
        m = MARKER.match(line)
        if m:
            marker = m.group(1)
            i += 1
            continue
        m = FENCE.match(line)
        if m:
            indent, lang = len(m.group(1)), m.group(2)
            body, i = [], i + 1
            while i < len(lines) and not FENCE.match(lines[i]):
                body.append(lines[i][indent:] if lines[i][:indent].strip() == "" else lines[i])
                i += 1
            where = f"{rel}:{i - len(body)}"
            text = "\n".join(body) + "\n"
            if lang == "promql":
                exprs.append((normalize(text), where))
            elif lang == "yaml" and marker == "prometheus-rules":
                rules.append((text, where))
            elif lang == "yaml" and marker == "prometheus-config":
                configs.append((text, where))
            marker = None
            i += 1
            continue
        if line.strip():
            marker = None
        for span in INLINE.findall(line):
            if PROMQL_SYNTAX.search(span):
                exprs.append((normalize(span), f"{rel}:{i + 1}"))
        i += 1
    return exprs, rules, configs


def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def promtool_test(promtool, tmp, name, expected, examples):
    with open(os.path.join(tmp, "rules.yml"), "w") as f:
        f.write("groups: []\n")
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": expected["interval"],
            "input_series": expected["input_series"],
            "promql_expr_test": [
                {"expr": e["expr"], "eval_time": e["eval_time"], "exp_samples": e["exp_samples"]}
                for e in examples
            ],
        }],
    }
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        yaml.safe_dump(test, f, sort_keys=False)
    return run([promtool, "test", "rules", name], tmp)


def main():
    source, promtool = os.path.abspath(sys.argv[1]), sys.argv[2]
    failures = []
    docs = [os.path.join(source, "README.md")] + sorted(glob.glob(os.path.join(source, "docs", "*.md")))
    exprs, rules, configs = [], [], []
    for path in docs:
        e, r, c = scan(path, os.path.relpath(path, source))
        exprs += e
        rules += r
        configs += c

    with tempfile.TemporaryDirectory(prefix="connwatch-promql-") as tmp:
        # Rule blocks: valid rule files, and their expressions are examples too.
        for n, (text, where) in enumerate(rules):
            name = f"doc-rules-{n}.yml"
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
            rc, out = run([promtool, "check", "rules", name], tmp)
            if rc != 0:
                failures.append(f"{where}: promtool check rules:\n{out}")
            doc = yaml.safe_load(text) or {}
            for group in doc.get("groups", []):
                for rule in group.get("rules", []):
                    exprs.append((normalize(rule["expr"]), f"{where} ({rule.get('alert') or rule.get('record')})"))
        for n, (text, where) in enumerate(configs):
            name = f"doc-prometheus-{n}.yml"
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
            rc, out = run([promtool, "check", "config", name], tmp)
            print(f"{'ok  ' if rc == 0 else 'FAIL'} {where}: promtool check config")
            if rc != 0:
                failures.append(f"{where}: promtool check config:\n{out}")

        with open(os.path.join(source, "tests", "docs", "promql_examples.yml")) as f:
            expected = yaml.safe_load(f)
        listed = {normalize(e["expr"]): e for e in expected["examples"]}
        found = {}
        for expr, where in exprs:
            found.setdefault(expr, where)
        for expr, where in sorted(found.items(), key=lambda kv: kv[1]):
            if expr in listed:
                print(f"ok   {where}: {expr}")
            else:
                failures.append(f"{where}: `{expr}` has no expected samples in "
                                "tests/docs/promql_examples.yml")
        for expr in listed:
            if expr not in found:
                failures.append(f"tests/docs/promql_examples.yml lists `{expr}`, which no doc has any more")
        if len(found) < 4:
            failures.append(f"only {len(found)} PromQL expressions found in the docs")

        rc, out = promtool_test(promtool, tmp, "examples.test.yml", expected,
                                [listed[e] for e in found if e in listed])
        print(out)
        if rc != 0:
            failures.append("promtool test rules failed for the examples (above)")

        # The series must catch a join on `target` alone.
        naive = {"expr": "connwatch_target_up * on (target) group_left (team) connwatch_target_info",
                 "eval_time": "20m", "exp_samples": []}
        rc, out = promtool_test(promtool, tmp, "naive.test.yml", expected, [naive])
        if rc == 0 or "many-to-many" not in out:
            failures.append("a join on `target` alone passes against the two watchers' series: "
                            f"they no longer show the many-to-many mistake\n{out}")
        else:
            print("ok   a join on `target` alone fails against the two watchers' series (many-to-many)")

    for f in failures:
        print("FAIL " + f)
    print(f"{len(found)} expressions, {len(rules)} rule blocks, {len(configs)} Prometheus configs; "
          f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
