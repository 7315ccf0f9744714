#!/usr/bin/env python3
"""The server's stage timings (taihu_stage_duration_milliseconds on /metrics) between two scrapes of one server:
count, mean and histogram-bucket bounds of p50, p99 and max of what was recorded in between.

    bench/stage-diff.py BEFORE AFTER [PREFIX...]     # e.g. metrics-at-kill-2.txt metrics-after-kill-2.txt connect. ingest.
"""
import re
import sys


def read(path):
    stages = {}
    for line in open(path):
        # The stages, and the broker's time to accept a client (as connect.accepted.from_open and .from_connect).
        if line.startswith('taihu_stage_duration_milliseconds'):
            metric, stage = 'taihu_stage_duration_milliseconds', re.search(r'stage="([^"]+)"', line)
            name = stage.group(1) if stage else None
        elif line.startswith('taihu_mqtt_connect_duration_milliseconds'):
            metric, start = 'taihu_mqtt_connect_duration_milliseconds', re.search(r'from="([^"]+)"', line)
            name = 'connect.accepted.from_' + start.group(1) if start else None
        else:
            continue
        if not name:
            continue
        s = stages.setdefault(name, {'b': {}, 'count': 0.0, 'sum': 0.0})
        value = float(line.rsplit(' ', 1)[1])
        le = re.search(r'le="([^"]+)"', line)
        if line.startswith(metric + '_bucket') and le:
            s['b'][float('inf') if le.group(1) == '+Inf' else float(le.group(1))] = value
        elif line.startswith(metric + '_count'):
            s['count'] = value
        elif line.startswith(metric + '_sum'):
            s['sum'] = value
    return stages


def main():
    before, after = read(sys.argv[1]), read(sys.argv[2])
    prefixes = sys.argv[3:] or ['']
    print(f"{'stage':32} {'count':>8} {'mean ms':>9} {'p50<=':>7} {'p99<=':>7} {'max<=':>7}")
    for name in sorted(after):
        if not any(name.startswith(p) for p in prefixes):
            continue
        a, b = after[name], before.get(name, {'b': {}, 'count': 0.0, 'sum': 0.0})
        count = a['count'] - b['count']
        if count <= 0:
            continue
        buckets = sorted((le, c - b['b'].get(le, 0.0)) for le, c in a['b'].items())

        def q(p):
            for le, c in buckets:
                if c >= p * count:
                    return le
            return float('nan')

        print(f"{name:32} {count:8.0f} {(a['sum'] - b['sum']) / count:9.2f} {q(.5):7g} {q(.99):7g} {q(1):7g}")


main()
