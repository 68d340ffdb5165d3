"""Shared helpers for Canopy's benchmarks: statistics and side-by-side
tables. Every benchmark measures our code and a baseline in the same run."""
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("CANOPY_BUILD", os.path.join(REPO, "build"))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))


def summary(xs):
    xs = sorted(xs)
    med = statistics.median(xs)
    return {"median": med, "min": xs[0], "max": xs[-1], "n": len(xs)}


def fmt(s, unit):
    return "%9.2f %s (min %.2f, max %.2f, n=%d)" % (
        s["median"], unit, s["min"], s["max"], s["n"])


def compare(title, ours, base, unit, base_name, lower_is_better=True,
            ours_name="canopy-vmm"):
    """Print one row pair: ours, the baseline and the ratio of medians."""
    a, b = summary(ours), summary(base)
    ratio = b["median"] / a["median"] if lower_is_better else \
        a["median"] / b["median"]
    print("%s" % title)
    width = max(10, len(ours_name), len(base_name))
    print("  %-*s  %s" % (width, ours_name, fmt(a, unit)))
    print("  %-*s  %s" % (width, base_name, fmt(b, unit)))
    print("  %-*s  %.2fx %s" % (width, "ratio", ratio,
                                "(>1: canopy better)"))
    sys.stdout.flush()
    return a, b, ratio


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return "%s, %d CPUs, kernel %s" % (cpu, os.cpu_count(), os.uname().release)
