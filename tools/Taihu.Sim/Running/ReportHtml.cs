using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Taihu.Sim.Running;

/// <summary>
/// The report as one self-contained HTML file: the numbers in tables, and charts drawn by uPlot (inlined, as the
/// console ships it) from the report's JSON, which is inlined too. Opens from disk with no server.
/// </summary>
internal static class ReportHtml
{
    private static string Resource(string name)
    {
        using var stream = typeof(ReportHtml).Assembly.GetManifestResourceStream(name) ?? throw new InvalidOperationException($"{name} is not embedded in the simulator.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    public static string Render(SimReport report, JsonObject json)
    {
        static string E(string? text) => WebUtility.HtmlEncode(text ?? "");
        var html = new StringBuilder();
        html.Append("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>").Append(E(report.Scenario)).Append(" · Taihu simulator report</title>");
        html.Append("<style>").Append(Resource("uPlot.min.css")).Append("""
            body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#1d2733}
            h1{margin-bottom:.2rem} .verdict{font-size:1.3rem;font-weight:600;padding:.4rem .8rem;border-radius:6px;display:inline-block}
            .pass{background:#d8f3dc;color:#1b4332} .fail{background:#ffd6d6;color:#7a0b0b}
            table{border-collapse:collapse;margin:1rem 0;width:100%} th,td{border-bottom:1px solid #dde3ea;padding:.35rem .6rem;text-align:left;font-variant-numeric:tabular-nums}
            th{background:#f3f6f9} .ok{color:#1b7a3a} .bad{color:#b00020} td.num{text-align:right} .chart{margin:1.5rem 0} .muted{color:#5b6b7b} .note{background:#fff7d6;padding:.4rem .8rem;border-radius:6px}
            """).Append("</style></head><body>");
        html.Append("<h1>").Append(E(report.Scenario)).Append("</h1><p class=\"muted\">").Append(E(report.Description)).Append("</p>");
        html.Append("<p><span class=\"verdict ").Append(report.Passed ? "pass\">Passed" : "fail\">Failed").Append("</span></p>");
        html.Append("<p class=\"muted\">").Append(E($"{report.Started:yyyy-MM-dd HH:mm:ss} to {report.Ended:HH:mm:ss} UTC · --speed {report.Speed} · --scale {report.Scale} · {report.Tenant}")).Append("</p>");

        foreach (var note in report.Notes)
        {
            html.Append("<p class=\"note\">").Append(E(note)).Append("</p>");
        }

        html.Append("<h2>Expectations</h2><table><tr><th></th><th>Expected</th><th>Found</th><th>Line</th></tr>");
        foreach (var e in report.Expectations)
        {
            html.Append("<tr><td>").Append(e.Skipped ? "<b class=\"muted\">SKIP</b>" : e.Met ? "<b class=\"ok\">PASS</b>" : "<b class=\"bad\">FAIL</b>").Append("</td><td>").Append(E(e.Expected)).Append("</td><td>").Append(E(e.Found))
                .Append("</td><td>").Append(e.Line > 0 ? e.Line.ToString(System.Globalization.CultureInfo.InvariantCulture) : "").Append("</td></tr>");
        }

        html.Append("</table><h2>Fleets</h2><table><tr><th>Fleet</th><th>Devices</th><th>Sent</th><th>Acknowledged</th><th>Failed</th><th>Stored</th><th>p50 ms</th><th>p99 ms</th></tr>");
        foreach (var f in report.Fleets)
        {
            html.Append(System.Globalization.CultureInfo.InvariantCulture,
                $"<tr><td>{E(f.Name)}</td><td class=num>{f.Devices}</td><td class=num>{f.Sent}</td><td class=num>{f.Acknowledged}</td><td class=num>{f.Failed}</td><td class=num>{f.Stored}</td><td class=num>{f.P50Ms:0.#}</td><td class=num>{f.P99Ms:0.#}</td></tr>");
        }

        html.Append("</table>");
        if (report.RealDevices.Count > 0)
        {
            html.Append("<h2>Real devices</h2><table><tr><th>Device</th><th>Proxy port</th><th>Connected after</th><th>Connections</th><th>Telemetry sent / acknowledged</th><th>Most a minute</th><th>Largest payload</th><th>RPC received / answered</th><th>Attribute updates received / acknowledged</th><th>Drops</th></tr>");
            foreach (var r in report.RealDevices)
            {
                html.Append(System.Globalization.CultureInfo.InvariantCulture,
                    $"<tr><td>{E(r.Name)}</td><td class=num>{r.Port}</td><td class=num>{(r.ConnectedAfterSeconds is { } c ? c.ToString("0.0 s", System.Globalization.CultureInfo.InvariantCulture) : "never")}</td><td class=num>{r.Connections}</td><td class=num>{r.TelemetrySent} / {r.TelemetryAcknowledged}</td><td class=num>{r.MaxPerMinute}</td><td class=num>{r.MaxPayload} B</td><td class=num>{r.RpcRequests} / {r.RpcResponses}</td><td class=num>{r.AttributeUpdates} / {r.AttributeUpdatesAcknowledged}</td><td>{E(string.Join("; ", r.Drops))}</td></tr>");
            }

            html.Append("</table>");
        }

        if (report.Fleets.Any(f => f.ConnectionsLost + f.Reconnects + f.MissedOffline + f.RpcAnswered + f.AttributeUpdates > 0))
        {
            html.Append("<table><tr><th>Fleet</th><th>Connections closed by the server</th><th>Reconnects</th><th>Reports missed offline</th><th>RPC answered</th><th>Attribute updates</th></tr>");
            foreach (var f in report.Fleets)
            {
                html.Append(System.Globalization.CultureInfo.InvariantCulture,
                    $"<tr><td>{E(f.Name)}</td><td class=num>{f.ConnectionsLost}</td><td class=num>{f.Reconnects}</td><td class=num>{f.MissedOffline}</td><td class=num>{f.RpcAnswered}</td><td class=num>{f.AttributeUpdates}</td></tr>");
            }

            html.Append("</table>");
        }

        if (report.Faults.Count > 0)
        {
            html.Append("<h2>Faults injected</h2><table><tr><th></th><th>Fault</th><th>Fleet</th><th>At</th><th>Devices</th><th>What the server did</th><th>Line</th></tr>");
            foreach (var f in report.Faults)
            {
                html.Append("<tr><td>").Append(f.Handled ? "<b class=\"ok\">handled</b>" : "<b class=\"bad\">NOT handled</b>").Append("</td><td>").Append(E(f.Kind))
                    .Append("</td><td>").Append(E(f.Fleet)).Append("</td><td>").Append(E(Scenarios.Durations.Format(f.At))).Append("</td><td class=num>").Append(f.Devices)
                    .Append("</td><td>").Append(E(string.Join("; ", f.Outcomes.Select(o => $"{o.Count} × {o.Outcome}")) + (f.Why.Length > 0 ? " (" + f.Why + ")" : "")))
                    .Append("</td><td>").Append(f.Line).Append("</td></tr>");
            }

            html.Append("</table>");
        }

        if (report.Rpc.Count > 0)
        {
            html.Append("<h2>RPC calls</h2><table><tr><th>Fleet</th><th>Method</th><th>Calls</th><th>Answered</th><th>With an error</th><th>Timed out</th><th>Failed</th><th>Not made (held offline)</th><th>p99 ms</th></tr>");
            foreach (var r in report.Rpc)
            {
                html.Append(System.Globalization.CultureInfo.InvariantCulture,
                    $"<tr><td>{E(r.Fleet)}</td><td>{E(r.Method)}</td><td class=num>{r.Calls}</td><td class=num>{r.Answered}</td><td class=num>{r.AnsweredWithError}</td><td class=num>{r.TimedOut}</td><td class=num>{r.Failed}</td><td class=num>{r.Offline}</td><td class=num>{r.P99Ms:0.#}</td></tr>");
            }

            html.Append("</table>");
        }

        html.Append("<h2>Messages per second</h2><div id=\"rates\" class=\"chart\"></div>");
        if (report.ServerStored.Count > 0)
        {
            html.Append("<h2>Points stored per second</h2><p class=\"muted\">What the server committed to its store each second (its own count, <code>taihu_ingest_points_total</code>: every key of every message, all tenants).</p><div id=\"stored\" class=\"chart\"></div>");
        }

        html.Append("<h2>Latency, send to acknowledgement</h2><div id=\"latency\" class=\"chart\"></div>");
        html.Append("<h2>Server CPU and memory</h2>");
        html.Append(System.Globalization.CultureInfo.InvariantCulture, $"<p class=\"muted\">The simulator itself used {report.Simulator.CpuPercent:0.#}% of a core over the run, and at most {report.Simulator.MemoryMb:0} MB.</p>");
        html.Append(report.ServerSource is null ? "<p class=\"muted\">Not measured: the server has no /metrics the simulator can read, and no --server-pid was given.</p>"
            : "<p class=\"muted\">From " + E(report.ServerSource) + ".</p><div id=\"server\" class=\"chart\"></div>");
        html.Append("<h2>Alarms</h2><div id=\"alarms\" class=\"chart\"></div><table><tr><th>Raised (scenario time)</th><th>Cleared</th><th>Type</th><th>Severity</th><th>Device</th><th>Fleet</th></tr>");
        foreach (var a in report.Alarms.Take(500))
        {
            html.Append("<tr><td>").Append(E(Scenarios.Durations.Format(TimeSpan.FromSeconds(Math.Round(a.RaisedAt.TotalSeconds))))).Append("</td><td>")
                .Append(E(a.ClearedAt is { } c ? Scenarios.Durations.Format(TimeSpan.FromSeconds(Math.Round(c.TotalSeconds))) : "active")).Append("</td><td>")
                .Append(E(a.Type)).Append("</td><td>").Append(E(a.Severity)).Append("</td><td>").Append(E(a.Device)).Append("</td><td>").Append(E(a.Fleet)).Append("</td></tr>");
        }

        html.Append("</table>");
        if (report.Alarms.Count > 500)
        {
            html.Append("<p class=\"muted\">The first 500 of ").Append(report.Alarms.Count).Append(" alarms; report.json has them all.</p>");
        }

        html.Append("<script>").Append(Resource("uPlot.iife.min.js")).Append("</script>");
        // The JSON goes in as a script of its own type: '<' is escaped by the serializer, so it cannot close the tag.
        html.Append("<script id=\"data\" type=\"application/json\">").Append(json.ToJsonString()).Append("</script>");
        html.Append("""
            <script>
            const report = JSON.parse(document.getElementById('data').textContent);
            const t = report.timeline.map((_, i) => i);
            const col = c => report.timeline.map(r => r[c]);
            const width = Math.min(1100, document.body.clientWidth);
            const seconds = { label: 'seconds of the run' };
            new uPlot({ width, height: 260, scales: { x: { time: false } }, axes: [seconds, { label: 'per second' }],
              series: [{}, { label: 'sent', stroke: '#1f77b4' }, { label: 'acknowledged', stroke: '#2ca02c' }, { label: 'failed', stroke: '#d62728' }] },
              [t, col(0), col(1), col(2)], document.getElementById('rates'));
            new uPlot({ width, height: 260, scales: { x: { time: false } }, axes: [seconds, { label: 'ms' }],
              series: [{}, { label: 'p50', stroke: '#9467bd' }, { label: 'p99', stroke: '#ff7f0e' }] },
              [t, col(3), col(4)], document.getElementById('latency'));
            const stored = report.server.stored;
            if (stored.length > 0) {
              new uPlot({ width, height: 220, scales: { x: { time: false } }, axes: [seconds, { label: 'points per second' }],
                series: [{}, { label: 'stored', stroke: '#2ca02c', fill: 'rgba(44,160,44,0.08)' }] },
                [stored.map(s => s[0]), stored.map(s => s[1])], document.getElementById('stored'));
            }
            const server = report.server.samples;
            if (server.length > 0 && document.getElementById('server')) {
              new uPlot({ width, height: 240, scales: { x: { time: false }, mb: {} }, axes: [seconds, { label: '% of a core' }, { scale: 'mb', side: 1, label: 'MB', grid: { show: false } }],
                series: [{}, { label: 'CPU %', stroke: '#17becf' }, { label: 'memory MB', stroke: '#bcbd22', scale: 'mb' }] },
                [server.map(s => s[0]), server.map(s => s[1]), server.map(s => s[2])], document.getElementById('server'));
            }
            // Active alarms of each type over scenario time (hours), stepping at each raise and clear: one sweep over
            // the raises and clears in time order, so that thousands of alarms draw at once.
            const types = [...new Set(report.alarms.map(a => a.type))];
            if (types.length > 0) {
              const end = report.durationSeconds;
              const index = new Map(types.map((type, i) => [type, i]));
              const changes = [];
              for (const a of report.alarms) {
                changes.push([a.raisedAtSeconds, index.get(a.type), 1]);
                if (a.clearedAtSeconds !== null) changes.push([a.clearedAtSeconds, index.get(a.type), -1]);
              }
              changes.sort((a, b) => a[0] - b[0]);
              const active = types.map(() => 0);
              const xs = [0];
              const series = types.map(() => [0]);
              for (let i = 0; i < changes.length && changes[i][0] < end; ) {
                const at = changes[i][0];
                for (; i < changes.length && changes[i][0] === at; i++) active[changes[i][1]] += changes[i][2];
                if (at <= 0) { series.forEach((s, k) => s[0] = active[k]); continue; }
                xs.push(at / 3600);
                series.forEach((s, k) => s.push(active[k]));
              }
              xs.push(end / 3600);
              series.forEach((s, k) => s.push(active[k]));
              const colours = ['#d62728', '#ff7f0e', '#8c564b', '#e377c2', '#7f7f7f'];
              new uPlot({ width, height: 220, scales: { x: { time: false } }, axes: [{ label: 'scenario time, hours' }, { label: 'active alarms' }],
                series: [{}, ...types.map((type, i) => ({ label: type, stroke: colours[i % colours.length], paths: uPlot.paths.stepped({ align: 1 }) }))] },
                [xs, ...series], document.getElementById('alarms'));
            }
            // When everything was drawn (ms from the start of loading): what the report's opening time is measured by.
            document.documentElement.dataset.drawnMs = Math.round(performance.now());
            </script></body></html>
            """);
        return html.ToString();
    }
}
