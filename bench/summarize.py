#!/usr/bin/env python3
"""Summarizes bench/compare.sh results (median and spread per scenario and broker) into docs/benchmarks.md,
between the markers <!-- compare:begin --> and <!-- compare:end -->."""
import glob, json, os, platform, statistics, subprocess, sys, datetime

results_dir, doc_path, command = sys.argv[1], sys.argv[2], sys.argv[3]
runs = {}
for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
    parts = os.path.basename(path)[: -len(".json")].split(".")
    # scenario.client.broker.round, or scenario.broker.round from before there were two clients
    scenario, client, broker = (parts[0], parts[1], parts[2]) if len(parts) == 4 else (parts[0], "taihu", parts[1])
    with open(path) as f:
        runs.setdefault((scenario, client, broker), []).append(json.load(f))

# A run that ended without a result (the generator could not connect, or failed) is counted, not left out.
failed = {}
for path in sorted(glob.glob(os.path.join(results_dir, "*.txt"))):
    if os.path.exists(path[: -len(".txt")] + ".json") and os.path.getsize(path[: -len(".txt")] + ".json") > 0:
        continue
    parts = os.path.basename(path)[: -len(".txt")].split(".")
    key = (parts[0], parts[1], parts[2]) if len(parts) == 4 else (parts[0], "taihu", parts[1])
    failed[key] = failed.get(key, 0) + 1
    runs.setdefault(key, [])

def med(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    m = statistics.median(values)
    return m, (max(values) - min(values))

def fmt(value, spread, digits=2):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f} ± {spread / 2:,.{digits}f}" if spread else f"{value:,.{digits}f}"

cpu = subprocess.run(["bash", "-c", "lscpu | sed -n 's/^Model name: *//p' | head -1"], capture_output=True, text=True).stdout.strip()
dotnet = subprocess.run(["dotnet", "--version"], capture_output=True, text=True).stdout.strip()
mosq = subprocess.run(["bash", "-c", "(mosquitto -h 2>&1 || /usr/sbin/mosquitto -h 2>&1) | head -1"], capture_output=True, text=True).stdout.strip()
lines = [
    f"Run on {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores ({cpu}), {platform.platform()}, .NET SDK {dotnet}, {mosq}.",
    f"Command: `{command}`. Median over rounds, ± half the spread (max - min).",
    "",
    "| scenario | client | broker | delivered msg/s | lost (median) | runs with loss | dropped by the broker (its count, runs with any) | broker CPU-s per million delivered | p50 ms | p99 ms | broker CPU % | generator CPU % | broker bytes allocated per delivered |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for scenario, client in sorted({(s, c) for s, c, _ in list(runs) + list(failed)}):
    for broker in ("mosquitto", "taihu"):
        rs = runs.get((scenario, client, broker), [])
        nfailed = failed.get((scenario, client, broker), 0)
        if not rs and not nfailed:
            continue
        lossy = sum(1 for r in rs if (r.get("lost") or 0) > 0)
        rate = med([r.get("deliveredPerSecond") for r in rs])
        lost = med([r.get("lost") for r in rs])
        per_m = med([r.get("brokerCpuSecondsPerMillion") for r in rs])
        p50 = med([r.get("latencyP50Ms") for r in rs])
        p99 = med([r.get("latencyP99Ms") for r in rs])
        bcpu = med([r.get("brokerCpuPercent") for r in rs])
        gcpu = med([r.get("generatorCpuPercent") for r in rs])
        alloc = med([r.get("brokerAllocatedBytesPerDelivered") for r in rs])
        drops = [r.get("brokerDropped") for r in rs if r.get("brokerDropped") is not None]
        dropped = f"{sum(drops):,} ({sum(1 for d in drops if d > 0)} of {len(drops)})" if drops else "n/a"
        runs_text = f"{lossy} of {len(rs)}" + (f" ({nfailed} more ended without a result)" if nfailed else "")
        lines.append(f"| {scenario} | {client} | {broker} | {fmt(*rate, 0)} | {fmt(*lost, 0)} | {runs_text} | {dropped} | {fmt(*per_m)} | {fmt(*p50)} | {fmt(*p99)} | {fmt(*bcpu, 1)} | {fmt(*gcpu, 1)} | {fmt(*alloc, 1)} |")

table = "\n".join(lines)
with open(doc_path) as f:
    doc = f.read()
begin, end = "<!-- compare:begin -->", "<!-- compare:end -->"
if begin in doc and end in doc:
    doc = doc[: doc.index(begin) + len(begin)] + "\n" + table + "\n" + doc[doc.index(end):]
else:
    doc += f"\n## Taihu and Mosquitto side by side\n\n{begin}\n{table}\n{end}\n"
with open(doc_path, "w") as f:
    f.write(doc)
print(table)
