# Prometheus text exposition and PromQL helpers for the metrics tests: parse /metrics, list metric names.
# SPDX-License-Identifier: MIT
import json
import re

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
# Names a family of each type exports besides its own.
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


class Exposition:
    """One /metrics answer: families {name: {"type", "help"}} and samples
    [(name, {label: value}, float)]."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []
        self.errors = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line:
                continue
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                parts = line.split(" ", 3)
                if len(parts) < 4:
                    self.errors.append("line %d: %r" % (n, line))
                    continue
                fam = self.families.setdefault(parts[2], {})
                fam["help" if parts[1] == "HELP" else "type"] = parts[3]
                continue
            if line.startswith("#"):
                continue
            m = SAMPLE_RE.match(line)
            if not m:
                self.errors.append("line %d: %r" % (n, line))
                continue
            labels = {}
            if m.group(2):
                for k, v in LABEL_RE.findall(m.group(2)):
                    labels[k] = v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def names(self):
        """Every metric name the exposition defines: each family's name and,
        for histograms and summaries, its _bucket/_sum/_count series."""
        out = set()
        for name, fam in self.families.items():
            out.add(name)
            for s in SUFFIXES.get(fam.get("type", ""), ()):
                out.add(name + s)
        return out

    def series_count(self):
        """Sample lines (what Prometheus stores as series)."""
        return len(self.samples)

    def get(self, name, **labels):
        """The value of the one sample of name with exactly these labels
        (others ignored when not given), or None."""
        for n, lab, v in self.samples:
            if n == name and all(lab.get(k) == str(val) for k, val in labels.items()):
                return v
        return None

    def all(self, name):
        return [(lab, v) for n, lab, v in self.samples if n == name]

    def family_of(self, sample_name):
        for name, fam in self.families.items():
            if sample_name == name or sample_name in [name + s for s in
                                                      SUFFIXES.get(fam.get("type", ""), ())]:
                return name
        return None


PROMQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
PROMQL_NAME = re.compile(r'(?<![A-Za-z0-9_:$])((?:tether|process)_[A-Za-z0-9_:]*)')


def promql_names(expr):
    """The tether_* and process_* metric names a PromQL expression uses
    (string literals, such as label values, are skipped)."""
    return set(PROMQL_NAME.findall(PROMQL_STRING.sub('""', expr)))


def dashboard_exprs(path):
    """Every "expr" and templating "query"/"definition" text of a Grafana
    dashboard JSON file (json.load fails on invalid JSON)."""
    with open(path) as f:
        dash = json.load(f)
    out = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("expr", "definition") and isinstance(v, str):
                    out.append(v)
                elif k == "query" and isinstance(v, str):
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    return dash, out
