using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using Taihu.Bench.Scenarios;

namespace Taihu.Bench;

/// <summary>The command line: one subcommand per scenario, sharing the connection and load options.</summary>
internal static class BenchCommands
{
    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public static IEnumerable<Command> Create()
    {
        yield return Flow("fan-in", "P publishers to S subscribers of one wildcard filter.", FlowPlan.FanIn, publishers: 50, subscribers: 1);
        yield return Flow("fan-out", "One publisher to N subscribers of one topic.", FlowPlan.FanOut, publishers: 1, subscribers: 1000);
        yield return Flow("pairs", "N independent publisher/subscriber pairs on distinct topics (--clients).", FlowPlan.Pairs, publishers: 0, subscribers: 0);
        yield return Flow("shared", "P publishers to a $share group of N consumers.", FlowPlan.Shared, publishers: 10, subscribers: 10);
        yield return Connections("idle", "Hold N connections (--clients) open; with --pid, the broker's resident memory per connection and its CPU while they idle (after --warmup).", ConnectionScenarios.IdleAsync, clients: 1000, duration: 10);
        yield return KestrelBaseline.Create();
        yield return Telemetry();
        yield return NodeKill();
        yield return Webhook();
        yield return Queries();
        yield return Rpc();
        yield return PersistentRpc();
        yield return Live();
        yield return Hj212();
        yield return Jt808();
        yield return Coap();
        yield return Connections("connect-storm", "Connect at --rate connections per second; connect latency and failures.", ConnectionScenarios.ConnectStormAsync, clients: 200, duration: 10);
    }

    private sealed class Common
    {
        public Option<string> Host { get; } = new("--host") { Description = "Broker host name or address.", DefaultValueFactory = _ => "127.0.0.1" };
        public Option<int> Port { get; } = new("--port", "-p") { Description = "Broker port.", DefaultValueFactory = _ => 1883 };
        public Option<bool> Tls { get; } = new("--tls") { Description = "Connect with TLS." };
        public Option<string?> CaFile { get; } = new("--ca-file") { Description = "PEM certificate to trust for TLS (e.g. Taihu's data/taihu-dev-cert.pem)." };
        public Option<string?> WebSocket { get; } = new("--ws") { Description = "Connect over WebSocket to this path (e.g. /mqtt); with --tls, secure WebSocket." };
        public Option<string> Protocol { get; } = new("--protocol", "-V") { Description = "MQTT version: 3.1.1 or 5.", DefaultValueFactory = _ => "5" };
        public Option<string?> UserName { get; } = new("--username", "-u") { Description = "User name for CONNECT." };
        public Option<string?> Password { get; } = new("--password", "-P") { Description = "Password for CONNECT." };
        public Option<double> Rate { get; } = new("--rate", "-r") { Description = "Total offered rate in messages per second (connections per second for connect-storm); 0 = as fast as possible.", DefaultValueFactory = _ => 0 };
        public Option<int> Payload { get; } = new("--payload") { Description = "Payload size in bytes (at least 20: timestamp, publisher and sequence).", DefaultValueFactory = _ => 100 };
        public Option<int> QoS { get; } = new("--qos", "-q") { Description = "QoS of publishes and subscriptions: 0, 1 or 2.", DefaultValueFactory = _ => 0 };
        public Option<double> Duration { get; } = new("--duration", "-d") { Description = "Seconds of measurement.", DefaultValueFactory = _ => 10 };
        public Option<double> Warmup { get; } = new("--warmup") { Description = "Seconds of warm-up before measuring (not counted).", DefaultValueFactory = _ => 2 };
        public Option<double> Drain { get; } = new("--drain") { Description = "Seconds to wait after publishing stops for messages still in flight; what has not arrived then is lost.", DefaultValueFactory = _ => 5 };
        public Option<int?> Publishers { get; } = new("--publishers") { Description = "Publishing connections." };
        public Option<int?> Subscribers { get; } = new("--subscribers") { Description = "Subscribing connections." };
        public Option<int?> Clients { get; } = new("--clients", "-c") { Description = "Connections: pairs for 'pairs', held connections for 'idle', concurrent connects for 'connect-storm'." };
        public Option<int> Inflight { get; } = new("--inflight") { Description = "QoS 1/2 messages a publisher may have unacknowledged.", DefaultValueFactory = _ => 100 };
        public Option<int?> Pid { get; } = new("--pid") { Description = "Broker process id: report its CPU%, CPU-seconds per million delivered and resident memory." };
        public Option<string?> MetricsUrl { get; } = new("--metrics-url") { Description = "Broker's Prometheus endpoint (e.g. http://127.0.0.1:8080/metrics): report its GC allocations per delivered message (.NET brokers)." };
        public Option<string?> Json { get; } = new("--json") { Description = "Write the result as JSON to this file." };
        public Option<string> Prefix { get; } = new("--topic-prefix") { Description = "First topic level of every topic the run uses.", DefaultValueFactory = _ => "bench" };
        public Option<string?> Sources { get; } = new("--source-addresses") { Description = "Comma-separated local addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3) when ports run short." };
        public Option<string?> OtherNodes { get; } = new("--other-nodes") { Description = "Message-flow scenarios on a cluster: comma-separated port:pid of the other nodes (e.g. 1886:4242,1887:4243). Subscriber i connects to node i, publisher i to node i+1 (of --port and these, in turn), so that messages cross nodes; the CPU reported is the nodes' together." };
        public Option<bool> Quiet { get; } = new("--quiet") { Description = "No live progress display." };
        public Option<string> Client { get; } = new("--client") { Description = "Client implementation for the message-flow scenarios: taihu (our own, batched, allocation-free) or mqttnet (the MQTTnet 5 client, as applications use it); for rpc's devices also mqttjs (the npm mqtt client in a Node.js process).", DefaultValueFactory = _ => "taihu" };
        public Option<bool> SocketsOnly { get; } = new("--sockets-only") { Description = "idle: open plain TCP connections without MQTT (to measure a bare listener such as kestrel-baseline)." };
        public Option<int> KeepAlive { get; } = new("--keep-alive") { Description = "idle: keep alive in CONNECT, seconds; each client sends PINGREQ once per period, staggered over the clients, as an idle device does (0: no keep alive, no pings).", DefaultValueFactory = _ => 60 };
        public Option<int> PingTick { get; } = new("--ping-tick") { Description = "idle: how often, in milliseconds, the generator sends the pings that have come due. 50 (the default) sends them in bursts (about 8 at a time for 10,000 clients pinging once a minute); 1 sends each about when it is due, as devices that connected at random times do.", DefaultValueFactory = _ => 50 };

        public void AddTo(Command command)
        {
            foreach (var option in new Option[] { Host, Port, Tls, CaFile, WebSocket, Protocol, UserName, Password, Rate, Payload, QoS, Duration, Warmup, Drain, Publishers, Subscribers, Clients, Inflight, Pid, MetricsUrl, Json, Prefix, Sources, OtherNodes, Quiet, SocketsOnly, Client, KeepAlive, PingTick })
            {
                command.Options.Add(option);
            }
        }

        public BenchOptions Bind(ParseResult r, int publishers, int subscribers, int clients, double? duration = null) => new()
        {
            Host = r.GetValue(Host)!,
            Port = r.GetValue(Port),
            Tls = r.GetValue(Tls),
            CaFile = r.GetValue(CaFile),
            WebSocketPath = r.GetValue(WebSocket),
            Protocol = r.GetValue(Protocol)!,
            UserName = r.GetValue(UserName),
            Password = r.GetValue(Password),
            Rate = r.GetValue(Rate),
            PayloadSize = r.GetValue(Payload),
            QoS = r.GetValue(QoS),
            DurationSeconds = r.GetResult(Duration) is null && duration is { } d ? d : r.GetValue(Duration),
            WarmupSeconds = r.GetValue(Warmup),
            DrainSeconds = r.GetValue(Drain),
            Publishers = r.GetValue(Publishers) ?? publishers,
            Subscribers = r.GetValue(Subscribers) ?? subscribers,
            Clients = r.GetValue(Clients) ?? clients,
            MaxInflight = r.GetValue(Inflight),
            BrokerPid = r.GetValue(Pid),
            MetricsUrl = r.GetValue(MetricsUrl),
            JsonPath = r.GetValue(Json),
            TopicPrefix = r.GetValue(Prefix)!,
            SourceAddresses = r.GetValue(Sources)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [],
            OtherNodes = ClusterNode.ParseList(r.GetValue(OtherNodes)),
            Quiet = r.GetValue(Quiet),
            SocketsOnly = r.GetValue(SocketsOnly),
            KeepAliveSeconds = r.GetValue(KeepAlive),
            PingTickMilliseconds = r.GetValue(PingTick),
            Client = Taihu.Bench.Client.BenchClients.Parse(r.GetValue(Client)),
        };
    }

    private static Command Flow(string name, string description, Func<BenchOptions, FlowPlan> plan, int publishers, int subscribers)
    {
        var command = new Command(name, description);
        var common = new Common();
        common.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, publishers, subscribers, clients: 100);
            if (!Validate(options))
            {
                return 2;
            }

            return await RunAsync(options, progress => new ThroughputScenario(options, plan(options), progress).RunAsync(cancellationToken));
        });
        return command;
    }

    private static Command Telemetry()
    {
        var command = new Command("telemetry", "Taihu only: --clients devices (created through the management API) send ThingsBoard telemetry; counts what the server acknowledges (stored, with Ingest:AckAfterCommit).");
        var common = new Common();
        common.AddTo(command);
        var api = new Option<string?>("--api") { Description = "Taihu's HTTP base address for creating the devices. [default: http://{host}:8080]" };
        var adminUser = new Option<string>("--admin-user") { Description = "System administrator who creates the bench tenant.", DefaultValueFactory = _ => "sysadmin@taihu.local" };
        var adminPassword = new Option<string>("--admin-password") { Description = "Its password.", Required = true };
        var keys = new Option<int>("--keys") { Description = "Telemetry keys per message.", DefaultValueFactory = _ => 5 };
        var rules = new Option<bool>("--rules") { Description = "Put the devices' profile under three alarm rules first (SIMPLE, DURATION, REPEATING, evaluated on every message; one device in 100 raises and clears one alarm)." };
        command.Options.Add(api);
        command.Options.Add(adminUser);
        command.Options.Add(adminPassword);
        command.Options.Add(keys);
        command.Options.Add(rules);
        var thirdPartyToken = new Option<string?>("--third-party-token-file") { Description = "Write the access tokens of --third-party-devices more devices to this file (one a line), for a third-party publisher (mosquitto_pub); with --rules, how many of them raised an alarm is reported." };
        var thirdPartyDevices = new Option<int>("--third-party-devices") { Description = "Devices for the third-party publisher.", DefaultValueFactory = _ => 0 };
        command.Options.Add(thirdPartyToken);
        command.Options.Add(thirdPartyDevices);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 1000);
            // Options left at their defaults have an implicit result.
            if (parse.GetResult(common.Inflight) is not { Implicit: false })
            {
                options.MaxInflight = 1; // a device waits for each PUBACK, as firmware does
            }

            if (parse.GetResult(common.QoS) is not { Implicit: false })
            {
                options.QoS = 1;
            }

            var telemetry = new TelemetryOptions(parse.GetValue(api) ?? $"http://{options.Host}:8080", parse.GetValue(adminUser)!, parse.GetValue(adminPassword)!, parse.GetValue(keys))
            {
                Rules = parse.GetValue(rules),
                ThirdPartyTokenFile = parse.GetValue(thirdPartyToken),
                ThirdPartyDevices = parse.GetValue(thirdPartyToken) is null ? 0 : Math.Max(0, parse.GetValue(thirdPartyDevices)),
            };
            if (!Validate(options) || telemetry.Keys is < 1 or > 100)
            {
                return 2;
            }

            return await RunAsync(options, progress => new TelemetryScenario(options, telemetry, progress).RunAsync(cancellationToken));
        });
        return command;
    }

    private static Command NodeKill()
    {
        var command = new Command("node-kill", "Taihu cluster only: --clients devices (MQTTnet's client, created through the management API), spread over --port and --other-nodes, send telemetry at QoS 1 waiting for each PUBACK; --kill-node is killed with SIGKILL --kill-after s in, its devices reconnect to the next node and send again what was not acknowledged. Then every acknowledged point is looked for through --api: how many are missing, and how long the devices took from the kill to their next acknowledgement.");
        var common = new Common();
        common.AddTo(command);
        var platform = new Platform();
        platform.AddTo(command);
        var keys = new Option<int>("--keys") { Description = "Telemetry keys per message.", DefaultValueFactory = _ => 5 };
        var killNode = new Option<int>("--kill-node") { Description = "Which node to kill: 1 is the first of --other-nodes (node 0, --port, serves --api and is never killed).", DefaultValueFactory = _ => 1 };
        var killAfter = new Option<double>("--kill-after") { Description = "Seconds after the devices start sending.", DefaultValueFactory = _ => 10 };
        var persistent = new Option<bool>("--persistent") { Description = "Persistent sessions (clean session 0; 5.0: an hour's session expiry), so that a device's session is taken over from the killed node." };
        command.Options.Add(keys);
        command.Options.Add(killNode);
        command.Options.Add(killAfter);
        command.Options.Add(persistent);
        var spread = new Option<bool>("--spread") { Description = "The killed node's devices reconnect spread over the other nodes (as behind a load balancer), not all to the next node in turn." };
        command.Options.Add(spread);
        var timeline = new Option<string?>("--timeline") { Description = "Writes a CSV file: per second, the messages acknowledged and the devices whose PUBACK has been awaited for more than a second." };
        command.Options.Add(timeline);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 3000, duration: 40);
            if (parse.GetResult(common.Rate) is not { Implicit: false })
            {
                options.Rate = options.Clients; // a message a second per device
            }

            var target = platform.Bind(parse, options);
            var node = parse.GetValue(killNode);
            var after = parse.GetValue(killAfter);
            if (!Validate(options) || options.Clients < 1 || options.Rate <= 0 || parse.GetValue(keys) is < 1 or > 100
                || node < 1 || node > options.OtherNodes.Count || after < 0 || after >= options.DurationSeconds)
            {
                Console.Error.WriteLine("node-kill needs --other-nodes, --kill-node between 1 and their number, --kill-after within --duration, --clients and --rate above 0, --keys between 1 and 100.");
                return 2;
            }

            var kill = new NodeKillOptions(target.ApiUrl, target.AdminUser, target.AdminPassword, parse.GetValue(keys), node, after, parse.GetValue(persistent)) { Spread = parse.GetValue(spread), TimelinePath = parse.GetValue(timeline) };
            return await RunAsync(options, progress => new NodeKillScenario(options, kill, progress).RunAsync(cancellationToken));
        });
        return command;
    }

    private static Command Hj212()
    {
        var command = new Command("hj212", "Taihu only: --stations HJ 212 stations (provisioned by a profile's key) send minute data every --interval s; counts uploads acknowledged with 9014 (after the commit), never acknowledged, and acknowledged but not stored.");
        var host = new Option<string>("--host") { Description = "Server host name or address.", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port", "-p") { Description = "The HJ 212 port (Listeners:Hj212Port).", DefaultValueFactory = _ => 9212 };
        var platform = new Platform();
        var stations = new Option<int>("--stations") { Description = "Stations, each with its own connection.", DefaultValueFactory = _ => 2000 };
        var interval = new Option<double>("--interval") { Description = "Seconds between a station's uploads (minute data: 60).", DefaultValueFactory = _ => 60 };
        var duration = new Option<double>("--duration", "-d") { Description = "Seconds of uploads.", DefaultValueFactory = _ => 120 };
        var timeout = new Option<double>("--answer-timeout") { Description = "Seconds a station waits for 9014 before it connects again and resends.", DefaultValueFactory = _ => 30 };
        var perUpload = new Option<bool>("--connection-per-upload") { Description = "Open a connection for each upload instead of keeping one." };
        var verify = new Option<int>("--verify") { Description = "Stations whose stored points are read back through the REST API.", DefaultValueFactory = _ => 50 };
        var json = new Option<string?>("--json") { Description = "Write the result as JSON to this file." };
        foreach (var option in new Option[] { host, port, stations, interval, duration, timeout, perUpload, verify, json })
        {
            command.Options.Add(option);
        }

        platform.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = new Hj212BenchOptions(parse.GetValue(host)!, parse.GetValue(port), parse.GetValue(platform.Api) ?? $"http://{parse.GetValue(host)}:8080",
                parse.GetValue(platform.AdminUser)!, parse.GetValue(platform.AdminPassword)!, parse.GetValue(stations), parse.GetValue(interval), parse.GetValue(duration),
                parse.GetValue(timeout), parse.GetValue(perUpload), parse.GetValue(verify), parse.GetValue(json));
            if (options.Stations is < 1 or > 99_999 || options.IntervalSeconds <= 0 || options.DurationSeconds <= 0 || options.AnswerTimeoutSeconds <= 0)
            {
                Console.Error.WriteLine("hj212 needs --stations from 1 to 99999, and positive --interval, --duration and --answer-timeout.");
                return 2;
            }

            return await new Hj212Scenario(options).RunAsync(cancellationToken);
        });
        return command;
    }

    private static Command Webhook()
    {
        var command = new Command("webhook", "Taihu only: a webhook integration to a receiver in this process; --clients devices publish telemetry at QoS 1: events delivered per second, then the receiver stopped for --downtime s and started again: every event must arrive (duplicates, order per device and signatures checked).");
        var common = new Common();
        common.AddTo(command);
        var platform = new Platform();
        platform.AddTo(command);
        var downtime = new Option<double>("--downtime") { Description = "Seconds the receiver is stopped after the window while the devices go on publishing.", DefaultValueFactory = _ => 60 };
        var catchUp = new Option<double>("--catch-up") { Description = "Seconds to wait for every event after the receiver is back.", DefaultValueFactory = _ => 600 };
        var receiverPort = new Option<int>("--receiver-port") { Description = "The receiver's port on 127.0.0.1 (0: a free one).", DefaultValueFactory = _ => 0 };
        var thirdPartyToken = new Option<string?>("--third-party-token-file") { Description = "Create one more device and write its access token to this file, for a third-party publisher (mosquitto_pub) whose events are counted too." };
        var thirdPartyMessages = new Option<int>("--third-party-messages") { Description = "Messages the third-party publisher sends, each with k0 = 0, 1, ...", DefaultValueFactory = _ => 0 };
        foreach (var option in new Option[] { downtime, catchUp, receiverPort, thirdPartyToken, thirdPartyMessages })
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 100);
            if (parse.GetResult(common.Inflight) is not { Implicit: false })
            {
                options.MaxInflight = 10;
            }

            options.QoS = 1;
            var target = platform.Bind(parse, options);
            var webhook = new WebhookOptions(target.ApiUrl, target.AdminUser, target.AdminPassword)
            {
                DowntimeSeconds = parse.GetValue(downtime),
                CatchUpSeconds = parse.GetValue(catchUp),
                ReceiverPort = parse.GetValue(receiverPort),
                ThirdPartyTokenFile = parse.GetValue(thirdPartyToken),
                ThirdPartyMessages = parse.GetValue(thirdPartyMessages),
            };
            if (!Validate(options) || webhook.DowntimeSeconds < 0 || webhook.CatchUpSeconds <= 0 || options.Clients < 1)
            {
                Console.Error.WriteLine("webhook needs --clients > 0, --downtime >= 0 and --catch-up > 0.");
                return 2;
            }

            return await RunAsync(options, progress => new WebhookScenario(options, webhook, progress).RunAsync(cancellationToken));
        });
        return command;
    }

    private static Command Queries()
    {
        var command = new Command("queries", "Taihu only: latency of the management API's telemetry reads (latest values among --clients devices; a 1-hour AVG at 1-minute intervals over --points points).");
        var common = new Common();
        common.AddTo(command);
        var api = new Option<string?>("--api") { Description = "Taihu's HTTP base address. [default: http://{host}:8080]" };
        var adminUser = new Option<string>("--admin-user") { Description = "System administrator who creates the bench tenant.", DefaultValueFactory = _ => "sysadmin@taihu.local" };
        var adminPassword = new Option<string>("--admin-password") { Description = "Its password.", Required = true };
        var keys = new Option<int>("--keys") { Description = "Telemetry keys per device.", DefaultValueFactory = _ => 5 };
        var points = new Option<int>("--points") { Description = "Points of one key in one hour for the aggregate query.", DefaultValueFactory = _ => 1_000_000 };
        command.Options.Add(api);
        command.Options.Add(adminUser);
        command.Options.Add(adminPassword);
        command.Options.Add(keys);
        command.Options.Add(points);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 10_000);
            var telemetry = new TelemetryOptions(parse.GetValue(api) ?? $"http://{options.Host}:8080", parse.GetValue(adminUser)!, parse.GetValue(adminPassword)!, parse.GetValue(keys));
            var (result, report) = await new QueryScenario(options, telemetry, parse.GetValue(points), options.Quiet ? null : new LineProgress()).RunAsync(cancellationToken);
            Console.WriteLine(report);
            if (options.JsonPath is { } path)
            {
                await File.WriteAllTextAsync(path, JsonSerializer.Serialize(result, s_json), cancellationToken);
            }

            return 0;
        });
        return command;
    }

    /// <summary>The options of the scenarios that use Taihu's management API as well as MQTT.</summary>
    private sealed class Platform
    {
        public Option<string?> Api { get; } = new("--api") { Description = "Taihu's HTTP base address. [default: http://{host}:8080]" };
        public Option<string> AdminUser { get; } = new("--admin-user") { Description = "System administrator who creates the bench tenant.", DefaultValueFactory = _ => "sysadmin@taihu.local" };
        public Option<string> AdminPassword { get; } = new("--admin-password") { Description = "Its password.", Required = true };

        public void AddTo(Command command)
        {
            command.Options.Add(Api);
            command.Options.Add(AdminUser);
            command.Options.Add(AdminPassword);
        }

        public PlatformTarget Bind(ParseResult r, BenchOptions o) => new(r.GetValue(Api) ?? $"http://{o.Host}:8080", r.GetValue(AdminUser)!, r.GetValue(AdminPassword)!);
    }

    private static Command Rpc()
    {
        var command = new Command("rpc", "Taihu only: --clients devices answer RPC commands; a tenant administrator makes two-way calls (POST /api/rpc/twoway/{deviceId}) at --rate calls/s; latency from call to HTTP response, calls lost.");
        var common = new Common();
        common.AddTo(command);
        var platform = new Platform();
        platform.AddTo(command);
        var timeout = new Option<int>("--rpc-timeout") { Description = "Each call's timeout in milliseconds (the server answers 504 after it).", DefaultValueFactory = _ => 10_000 };
        command.Options.Add(timeout);
        var noGc = new Option<int>("--generator-no-gc-mb")
        {
            Description = "Megabytes the generator may allocate during the warm-up and the window without collecting (GC.TryStartNoGCRegion), so that its collector does not stop every device and the caller's clock at once (10,000 MQTTnet clients in one process paused it up to 97 ms); 0 lets it collect as usual. The result says whether the region held.",
            DefaultValueFactory = _ => 4096,
        };
        command.Options.Add(noGc);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 10_000);
            if (parse.GetResult(common.Rate) is not { Implicit: false })
            {
                options.Rate = 1000;
            }

            var noGcMegabytes = parse.GetValue(noGc);
            if (noGcMegabytes is < 0 or > 65_536)
            {
                Console.Error.WriteLine("--generator-no-gc-mb must be between 0 and 65536.");
                return 2;
            }

            var timeoutMs = parse.GetValue(timeout);
            if (!Validate(options, mqttJs: true) || options.Rate <= 0 || timeoutMs is < 1 or > 86_400_000 || options.Clients < 1)
            {
                Console.Error.WriteLine("rpc needs --rate > 0, --clients > 0 and --rpc-timeout between 1 and 86400000.");
                return 2;
            }

            var target = platform.Bind(parse, options);
            return await RunAsync(options, progress => new RpcScenario(options, target, timeoutMs, noGcMegabytes, progress).RunAsync(cancellationToken));
        });
        return command;
    }

    private static Command Coap()
    {
        var command = new Command("coap", "Taihu only: --clients devices post telemetry over CoAP (confirmable POST /api/v1/{token}/telemetry, one UDP socket each, --port is the CoAP port, 5683 unless given), each waiting for its 2.01 (sent after the commit); p99 from request to 2.01, requests lost after 4 retransmissions.");
        var common = new Common();
        common.AddTo(command);
        var platform = new Platform();
        platform.AddTo(command);
        var keys = new Option<int>("--keys") { Description = "Telemetry keys per message.", DefaultValueFactory = _ => 5 };
        command.Options.Add(keys);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 1000);
            if (parse.GetResult(common.Port) is not { Implicit: false })
            {
                options.Port = 5683;
            }

            var keyCount = parse.GetValue(keys);
            if (!Validate(options) || keyCount is < 1 or > 100 || options.Clients < 1)
            {
                Console.Error.WriteLine("coap needs --clients > 0 and --keys between 1 and 100.");
                return 2;
            }

            var target = platform.Bind(parse, options);
            return await RunAsync(options, progress => new CoapScenario(options, target, keyCount, progress).RunAsync(cancellationToken));
        });
        return command;
    }


    private static Command Jt808()
    {
        var command = new Command("jt808", "Taihu only: --clients JT/T 808 terminals register themselves (their manufacturer ID is a device profile's provision key), authenticate, and send a location every --interval s and a heartbeat every --heartbeat s; counts the 0x8001 answers (sent after the commit) and the latency from report to answer.");
        var common = new Common();
        common.AddTo(command);
        var platform = new Platform();
        platform.AddTo(command);
        var port = new Option<int>("--jt808-port") { Description = "Taihu's JT/T 808 port (Listeners:Jt808Port).", DefaultValueFactory = _ => 6808 };
        var interval = new Option<double>("--interval") { Description = "Seconds between one terminal's location reports.", DefaultValueFactory = _ => 10 };
        var heartbeat = new Option<double>("--heartbeat") { Description = "Seconds between one terminal's heartbeats.", DefaultValueFactory = _ => 30 };
        command.Options.Add(port);
        command.Options.Add(interval);
        command.Options.Add(heartbeat);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 1000);
            var jt808 = new Jt808Options(platform.Bind(parse, options), parse.GetValue(port), parse.GetValue(interval), parse.GetValue(heartbeat));
            if (!Validate(options) || options.Clients < 1 || jt808.IntervalSeconds <= 0 || jt808.HeartbeatSeconds <= 0)
            {
                Console.Error.WriteLine("jt808 needs --clients > 0, --interval > 0 and --heartbeat > 0.");
                return 2;
            }

            return await RunAsync(options, progress => new Jt808Scenario(options, jt808, progress).RunAsync(cancellationToken));
        });
        return command;
    }

    private static Command PersistentRpc()
    {
        var command = new Command("rpc-persistent", "Taihu only: --phase create stores --calls persistent calls for each of --clients offline devices; --phase deliver (after a restart) connects them and measures until every call is delivered, in order, and SUCCESSFUL. --duration is the deliver phase's deadline.");
        var common = new Common();
        common.AddTo(command);
        var platform = new Platform();
        platform.AddTo(command);
        var phase = new Option<string>("--phase") { Description = "create or deliver.", Required = true };
        var calls = new Option<int>("--calls") { Description = "Persistent calls per device.", DefaultValueFactory = _ => 10 };
        var state = new Option<string>("--state") { Description = "File the create phase writes and the deliver phase reads (devices, tokens, the tenant's administrator).", DefaultValueFactory = _ => "rpc-persistent.state.json" };
        var keep = new Option<bool>("--keep") { Description = "deliver: keep the tenant and its calls at the end." };
        command.Options.Add(phase);
        command.Options.Add(calls);
        command.Options.Add(state);
        command.Options.Add(keep);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 10_000, duration: 120);
            var which = parse.GetValue(phase);
            var perDevice = parse.GetValue(calls);
            if (!Validate(options) || which is not ("create" or "deliver") || perDevice is < 1 or > 10_000 || options.Clients < 1)
            {
                Console.Error.WriteLine("rpc-persistent needs --phase create or deliver, --calls between 1 and 10000 and --clients > 0.");
                return 2;
            }

            var scenario = new Func<IProgress<ProgressReport>?, PersistentRpcScenario>(progress => new PersistentRpcScenario(options, platform.Bind(parse, options), perDevice, parse.GetValue(state)!, progress));
            return which == "create"
                ? await RunAsync(options, progress => scenario(progress).CreateAsync(cancellationToken))
                : await RunAsync(options, progress => scenario(progress).DeliverAsync(parse.GetValue(keep), cancellationToken));
        });
        return command;
    }

    private static Command Live()
    {
        var command = new Command("live", "Taihu only: --clients WebSocket subscribers (/api/ws, one device each) while as many devices send telemetry at --rate msg/s (--keys points each); publish-to-frame latency and, with --pid, the server's resident memory over the run.");
        var common = new Common();
        common.AddTo(command);
        var platform = new Platform();
        platform.AddTo(command);
        var keys = new Option<int>("--keys") { Description = "Telemetry keys per message.", DefaultValueFactory = _ => 5 };
        var subscribeKeys = new Option<string?>("--subscribe-keys") { Description = "Keys each subscription asks for, comma-separated (k0 carries the timing). [default: every key]" };
        command.Options.Add(keys);
        command.Options.Add(subscribeKeys);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients: 1000);
            if (parse.GetResult(common.Inflight) is not { Implicit: false })
            {
                options.MaxInflight = 10; // several in flight per device, as the durable ingest run reached 100k points/s
            }

            if (parse.GetResult(common.Rate) is not { Implicit: false })
            {
                options.Rate = 20_000;
            }

            var keyCount = parse.GetValue(keys);
            if (!Validate(options) || keyCount is < 1 or > 100 || options.Rate <= 0 || options.Clients < 1)
            {
                Console.Error.WriteLine("live needs --rate > 0, --clients > 0 and --keys between 1 and 100.");
                return 2;
            }

            var target = platform.Bind(parse, options);
            return await RunAsync(options, progress => new LiveScenario(options, target, keyCount, parse.GetValue(subscribeKeys), progress).RunAsync(cancellationToken));
        });
        return command;
    }

    private static Command Connections(string name, string description, Func<BenchOptions, IProgress<ProgressReport>?, CancellationToken, Task<BenchResult>> run, int clients, double duration)
    {
        var command = new Command(name, description);
        var common = new Common();
        common.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = common.Bind(parse, 0, 0, clients, duration);
            if (!Validate(options))
            {
                return 2;
            }

            return await RunAsync(options, progress => run(options, progress, cancellationToken));
        });
        return command;
    }

    private static bool Validate(BenchOptions o, bool mqttJs = false)
    {
        var errors = new List<string>();
        if (o.Client == Taihu.Bench.Client.ClientKind.MqttJs && !mqttJs) errors.Add("--client mqttjs drives only the rpc scenario's devices; use taihu or mqttnet here.");
        if (o.QoS is < 0 or > 2) errors.Add("--qos must be 0, 1 or 2.");
        if (o.DurationSeconds <= 0) errors.Add("--duration must be positive.");
        if (o.WarmupSeconds < 0) errors.Add("--warmup must not be negative.");
        if (o.Rate < 0) errors.Add("--rate must not be negative.");
        if (o.PayloadSize < 0) errors.Add("--payload must not be negative.");
        if (o.Protocol is not ("3.1.1" or "311" or "4" or "5" or "5.0" or "500")) errors.Add("--protocol must be 3.1.1 or 5.");
        if (o.MaxInflight is < 1 or > 65_535) errors.Add("--inflight must be between 1 and 65535.");
        if (o.KeepAliveSeconds is < 0 or > 65_535) errors.Add("--keep-alive must be between 0 and 65535.");
        if (o.PingTickMilliseconds is < 1 or > 60_000) errors.Add("--ping-tick must be between 1 and 60000 milliseconds.");
        foreach (var error in errors)
        {
            Console.Error.WriteLine(error);
        }

        return errors.Count == 0;
    }

    private static async Task<int> RunAsync(BenchOptions options, Func<IProgress<ProgressReport>?, Task<BenchResult>> run)
    {
        BenchResult result;
        try
        {
            if (options.Quiet || Console.IsOutputRedirected)
            {
                result = await run(options.Quiet ? null : new LineProgress());
            }
            else
            {
                result = await AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new ElapsedTimeColumn())
                    .StartAsync(async ctx =>
                    {
                        var task = ctx.AddTask("starting", maxValue: 1);
                        var progress = new Progress<ProgressReport>(p =>
                        {
                            task.MaxValue = Math.Max(1, p.Total.TotalSeconds);
                            task.Value = Math.Min(task.MaxValue, p.Elapsed.TotalSeconds);
                            task.Description = string.Create(CultureInfo.InvariantCulture, $"{p.Phase}: sent {p.Sent:N0}, received {p.Received:N0}, p99 {p.P99Ms:F2} ms");
                        });
                        return await run(progress);
                    });
            }
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or System.Net.Sockets.SocketException or TimeoutException or HttpRequestException)
        {
            Console.Error.WriteLine($"The run failed: {ex.Message}");
            return 1;
        }

        PrintTable(result);
        if (options.JsonPath is { } path)
        {
            await File.WriteAllTextAsync(path, JsonSerializer.Serialize(result, s_json));
        }

        return result.Lost > 0 ? 3 : 0;
    }

    private static void PrintTable(BenchResult r)
    {
        var table = new Table().AddColumn("measure").AddColumn(new TableColumn("value").RightAligned());
        void Row(string label, string? value)
        {
            if (value is not null)
            {
                table.AddRow(Markup.Escape(label), Markup.Escape(value));
            }
        }

        static string F(double v, string format = "N0") => v.ToString(format, CultureInfo.InvariantCulture);
        Row("scenario", $"{r.Scenario} ({r.Protocol}, QoS {r.QoS}, {r.PayloadSize} B, {r.Client} client) against {r.Target}");
        Row("connections", $"{r.Connections} ({r.Publishers} publishing, {r.Subscribers} subscribing, {r.ConnectFailures} failed)");
        if (r.Scenario is not ("idle" or "connect-storm" or "rpc-persistent create"))
        {
            Row("offered rate", r.OfferedRate == 0 ? "as fast as possible" : $"{F(r.OfferedRate)} msg/s");
            Row("sent / expected / delivered", $"{F(r.Sent)} / {F(r.Expected)} / {F(r.Delivered)}");
            Row("lost", $"{F(r.Lost)}{(r.Duplicates > 0 ? $" (and {F(r.Duplicates)} duplicates)" : "")}");
            Row("delivered msg/s", F(r.DeliveredPerSecond));
            Row(r.Scenario == "rpc-persistent deliver" ? "time to every call SUCCESSFUL" : "latency p50 / p90 / p99 / p99.9 / max", r.Scenario == "rpc-persistent deliver" ? $"{F(r.DurationSeconds, "F1")} s" : $"{F(r.LatencyP50Ms, "F2")} / {F(r.LatencyP90Ms, "F2")} / {F(r.LatencyP99Ms, "F2")} / {F(r.LatencyP999Ms, "F2")} / {F(r.LatencyMaxMs, "F2")} ms");
        }

        if (r.ConnectP50Ms is { } c50)
        {
            Row("connect latency p50 / p99", $"{F(c50, "F2")} / {F(r.ConnectP99Ms ?? 0, "F2")} ms");
        }

        Row("broker CPU", r.BrokerCpuPercent is { } cpu ? $"{F(cpu, "F1")} %" : null);
        Row("broker CPU-seconds per million delivered", r.BrokerCpuSecondsPerMillion is { } perM ? F(perM, "F2") : null);
        Row("dropped by the broker (its own count)", r.BrokerDropped is { } dropped ? F(dropped, "N0") : null);
        Row("broker allocations per delivered message", r.BrokerAllocatedBytesPerDelivered is { } alloc ? $"{F(alloc, "F1")} B" : null);
        Row("broker resident memory", r.BrokerResidentBytes is { } rss ? $"{F(rss / 1048576.0, "F1")} MiB{(r.BrokerResidentStartBytes is { } first ? $" (at start {F(first / 1048576.0, "F1")} MiB, at most {F((r.BrokerResidentMaxBytes ?? 0) / 1048576.0, "F1")} MiB)" : "")}" : null);
        Row("broker memory per connection", r.BrokerBytesPerConnection is { } per ? $"{F(per / 1024, "F2")} KiB" : null);
        Row("note", r.Note);
        Row("generator CPU (its own)", $"{F(r.GeneratorCpuPercent, "F1")} %{(r.GeneratorCpuPercent > 90 ? " (saturated: the generator may be the bottleneck)" : "")}");
        if (r.GeneratorAllocatedBytes > 0 && r.Sent > 0)
        {
            Row("generator allocations", $"{F(r.GeneratorAllocatedBytes / (double)Math.Max(1, r.Sent + r.Delivered), "F1")} B per message handled");
        }

        if (r.PacedMessagesSkipped > 0)
        {
            Row("offered but not sent (generator behind)", F(r.PacedMessagesSkipped));
        }

        AnsiConsole.Write(table);
    }

    private sealed class LineProgress : IProgress<ProgressReport>
    {
        private long _lastSecond = -1;

        public void Report(ProgressReport value)
        {
            var second = (long)value.Elapsed.TotalSeconds;
            if (second == _lastSecond)
            {
                return;
            }

            _lastSecond = second;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{value.Elapsed:mm\\:ss}] {value.Phase}: sent {value.Sent:N0}, received {value.Received:N0}, p99 {value.P99Ms:F2} ms"));
        }
    }
}
