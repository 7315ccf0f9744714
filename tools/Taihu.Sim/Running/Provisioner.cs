using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Taihu.Bench.Scenarios;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>A device the run provisioned: its fleet, number, name, id and access token (and its gateway's, when it reports through one).</summary>
public sealed record ProvisionedDevice(FleetDefinition Fleet, int FleetIndex, int Number, string Name, string Id, string Token)
{
    public ProvisionedGateway? Gateway { get; init; }
}

/// <summary>A gateway the run provisioned for a fleet's devices.</summary>
public sealed record ProvisionedGateway(string Name, string Id, string Token, int FleetIndex, int Number);

/// <summary>
/// Makes the scenario's fleet on a Taihu (or ThingsBoard-compatible) server through its management API, as a
/// person would: a tenant of the run's own (created by the system administrator), the scenario's device profiles
/// with their alarm rules (thresholds divided by <c>--speed</c>), and every device with an access token.
/// </summary>
public sealed class Provisioner(HttpClient http, ScenarioScaling scaling)
{
    public string RunId { get; } = Guid.NewGuid().ToString("N")[..8];

    public string TenantToken { get; private set; } = "";

    public string TenantId { get; private set; } = "";

    public string TenantAdmin { get; private set; } = "";

    public string TenantPassword { get; private set; } = "";

    /// <summary>Set when the run uses an existing tenant (and its devices and profiles of the same names) instead of making one.</summary>
    public bool ExistingTenant { get; private set; }

    /// <summary>Signs in to an existing tenant as its administrator: devices and profiles already there by name are used as they are.</summary>
    public async Task UseTenantAsync(string tenantAdmin, string password, CancellationToken cancellationToken)
    {
        TenantToken = await BenchTenant.LoginAsync(http, tenantAdmin, password, cancellationToken);
        TenantAdmin = tenantAdmin;
        TenantPassword = "(your password)";
        ExistingTenant = true;
    }

    /// <summary>GET <paramref name="path"/> as the tenant; null when the server answers 404.</summary>
    private async Task<JsonElement?> FindAsync(string path, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("X-Authorization", "Bearer " + TenantToken);
        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.StatusCode == System.Net.HttpStatusCode.NotFound)
        {
            return null;
        }

        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"GET {path} failed: {(int)response.StatusCode} {text}");
        }

        return JsonDocument.Parse(text).RootElement.Clone();
    }

    public async Task CreateTenantAsync(Scenario scenario, string sysAdmin, string sysPassword, CancellationToken cancellationToken)
    {
        var sysToken = await BenchTenant.LoginAsync(http, sysAdmin, sysPassword, cancellationToken);
        var tenant = await BenchTenant.SendAsync(http, HttpMethod.Post, sysToken, "/api/tenant", new { title = $"sim {scenario.Name} {RunId}" }, cancellationToken);
        TenantId = tenant.GetProperty("id").GetProperty("id").GetString()!;
        TenantAdmin = $"sim-{RunId}@sim.local";
        TenantPassword = "sim-" + Guid.NewGuid().ToString("N");
        await BenchTenant.SendAsync(http, HttpMethod.Post, sysToken, "/api/user?sendActivationMail=false",
            new { email = TenantAdmin, authority = "TENANT_ADMIN", password = TenantPassword, tenantId = new { id = TenantId, entityType = "TENANT" } }, cancellationToken);
        TenantToken = await BenchTenant.LoginAsync(http, TenantAdmin, TenantPassword, cancellationToken);
    }

    /// <summary>Creates the profiles; returns their ids by name.</summary>
    public async Task<Dictionary<string, string>> CreateProfilesAsync(Scenario scenario, CancellationToken cancellationToken)
    {
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        if (ExistingTenant)
        {
            // The tenant's own profiles of the scenario's names are used as they are.
            var existing = await BenchTenant.SendAsync(http, HttpMethod.Get, TenantToken, "/api/deviceProfiles?pageSize=1000&page=0", null, cancellationToken);
            foreach (var profile in existing.GetProperty("data").EnumerateArray())
            {
                var name = profile.GetProperty("name").GetString()!;
                if (scenario.Profiles.Any(p => p.Name == name))
                {
                    ids[name] = profile.GetProperty("id").GetProperty("id").GetString()!;
                }
            }
        }

        foreach (var profile in scenario.Profiles)
        {
            if (ids.ContainsKey(profile.Name))
            {
                continue;
            }

            var data = new JsonObject();
            if (profile.InactivityTimeout is { } timeout)
            {
                data["inactivityTimeoutMs"] = Math.Max(1, (long)scaling.Real(timeout).TotalMilliseconds);
            }

            if (profile.Alarms is { } alarms)
            {
                var scaled = alarms.DeepClone().AsArray();
                ScaleDurations(scaled, scaling.Speed);
                data["alarms"] = scaled;
            }

            if (profile.MaxPublishRate is { } rate)
            {
                // A rate is per second of scenario time: a run N times faster sends N times as often.
                data["rateLimits"] = new JsonObject { ["maxPublishRate"] = Math.Max(1, (long)Math.Ceiling(rate * scaling.Speed)) };
            }

            var body = new JsonObject { ["name"] = profile.Name, ["description"] = profile.Description, ["type"] = "DEFAULT", ["profileData"] = data };
            var saved = await BenchTenant.SendAsync(http, HttpMethod.Post, TenantToken, "/api/deviceProfile", body, cancellationToken);
            ids[profile.Name] = saved.GetProperty("id").GetProperty("id").GetString()!;
        }

        return ids;
    }

    /// <summary>
    /// Divides every DURATION condition's threshold in ThingsBoard alarm rules by <paramref name="speed"/>, written
    /// in milliseconds so that short thresholds keep their precision.
    /// </summary>
    public static void ScaleDurations(JsonNode? node, double speed)
    {
        switch (node)
        {
            case JsonArray array:
                foreach (var item in array)
                {
                    ScaleDurations(item, speed);
                }

                break;
            case JsonObject obj:
                if (obj["type"]?.GetValueKind() == JsonValueKind.String && obj["type"]!.GetValue<string>() == "DURATION"
                    && obj["unit"]?.GetValue<string>() is { } unit && obj["predicate"]?["defaultValue"] is JsonValue value && Number(value) is { } amount)
                {
                    var milliseconds = amount * unit switch
                    {
                        "MILLISECONDS" => 1,
                        "SECONDS" => 1_000,
                        "MINUTES" => 60_000,
                        "HOURS" => 3_600_000,
                        "DAYS" => 86_400_000,
                        _ => double.NaN,
                    };
                    if (double.IsFinite(milliseconds))
                    {
                        obj["unit"] = "MILLISECONDS";
                        obj["predicate"]!["defaultValue"] = Math.Max(1, (long)Math.Round(milliseconds / speed));
                    }
                }

                foreach (var (_, child) in obj.ToList())
                {
                    ScaleDurations(child, speed);
                }

                break;
        }
    }

    private static double? Number(JsonValue value) =>
        value.TryGetValue<long>(out var integer) ? integer : value.TryGetValue<double>(out var number) ? number : null;

    /// <summary>
    /// The devices this process runs: every device of the (scaled) fleets in <paramref name="slice"/>, fleet by
    /// fleet in number order; a gateway fleet's devices by their gateway's number.
    /// </summary>
    public static List<(FleetDefinition Fleet, int FleetIndex, int Number)> Plan(Scenario scenario, ScenarioScaling scaling, FleetSlice slice)
    {
        var plan = new List<(FleetDefinition Fleet, int FleetIndex, int Number)>();
        for (var f = 0; f < scenario.Fleets.Count; f++)
        {
            var fleet = scenario.Fleets[f];
            for (var n = 1; n <= scaling.Count(fleet.Count); n++)
            {
                if (slice.Contains(fleet.GatewayName is null ? n : GatewayNumber(fleet, n)))
                {
                    plan.Add((fleet, f, n));
                }
            }
        }

        return plan;
    }

    private static int GatewayNumber(FleetDefinition fleet, int number) => ((number - 1) / fleet.DevicesPerGateway) + 1;

    /// <summary>
    /// The slice's devices for a plain MQTT server, which has no API to provision through: named as they would
    /// be, identified by name, with no credentials (the broker's anonymous access, or its own configuration).
    /// </summary>
    public List<ProvisionedDevice> Unprovisioned(Scenario scenario, FleetSlice slice)
    {
        var devices = new List<ProvisionedDevice>();
        foreach (var (fleet, fleetIndex, number) in Plan(scenario, scaling, slice))
        {
            ProvisionedGateway? gateway = null;
            if (fleet.GatewayName is not null)
            {
                var g = GatewayNumber(fleet, number);
                var gatewayName = DeviceNames.Format(fleet.GatewayName, g);
                gateway = new ProvisionedGateway(gatewayName, gatewayName, "", fleetIndex, g);
            }

            var name = fleet.Real is null ? fleet.DeviceName(number) : fleet.Name;
            devices.Add(new ProvisionedDevice(fleet, fleetIndex, number, name, name, "") { Gateway = gateway });
        }

        return devices;
    }

    /// <summary>Creates the slice's devices, 8 requests at a time (and their gateways first).</summary>
    public async Task<List<ProvisionedDevice>> CreateDevicesAsync(Scenario scenario, Dictionary<string, string> profiles, FleetSlice slice, IProgress<string>? progress, CancellationToken cancellationToken)
    {
        var plan = Plan(scenario, scaling, slice);

        // Gateways first: their devices are created assigned to them (ThingsBoard's lastConnectedGateway).
        var gateways = new Dictionary<(int Fleet, int Number), ProvisionedGateway>();
        for (var f = 0; f < scenario.Fleets.Count; f++)
        {
            var fleet = scenario.Fleets[f];
            if (fleet.GatewayName is null)
            {
                continue;
            }

            var count = (scaling.Count(fleet.Count) + fleet.DevicesPerGateway - 1) / fleet.DevicesPerGateway;
            for (var g = 1; g <= count; g++)
            {
                if (!slice.Contains(g))
                {
                    continue;
                }

                var token = string.Create(CultureInfo.InvariantCulture, $"sim-{RunId}-{f}-gw{g}");
                var name = DeviceNames.Format(fleet.GatewayName, g);
                var body = new JsonObject { ["name"] = name, ["type"] = "gateway", ["additionalInfo"] = new JsonObject { ["gateway"] = true } };
                var saved = await BenchTenant.SendAsync(http, HttpMethod.Post, TenantToken, $"/api/device?accessToken={token}", body, cancellationToken);
                gateways[(f, g)] = new ProvisionedGateway(name, saved.GetProperty("id").GetProperty("id").GetString()!, token, f, g);
            }
        }

        var devices = new ProvisionedDevice[plan.Count];
        var next = -1;
        var workers = new Task[8];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < plan.Count)
                {
                    var (fleet, fleetIndex, number) = plan[i];
                    var token = fleet.Real?.Token ?? string.Create(CultureInfo.InvariantCulture, $"sim-{RunId}-{fleetIndex}-{number}");
                    var name = fleet.Real is null ? fleet.DeviceName(number) : fleet.Name;
                    if (ExistingTenant && await FindAsync($"/api/tenant/devices/{Uri.EscapeDataString(name)}", cancellationToken) is { } found)
                    {
                        // A device of the tenant's own: it connects with the access token it has.
                        var foundId = found.GetProperty("id").GetProperty("id").GetString()!;
                        var existing = await BenchTenant.SendAsync(http, HttpMethod.Get, TenantToken, $"/api/device/{foundId}/credentials", null, cancellationToken);
                        if (existing.GetProperty("credentialsType").GetString() != "ACCESS_TOKEN" || ProtocolCredentials.For(fleet.Protocol, RunId, fleetIndex, number) is not null)
                        {
                            throw new InvalidOperationException($"The tenant's device '{name}' has {existing.GetProperty("credentialsType").GetString()} credentials; in an existing tenant the simulator connects its devices with access tokens (MQTT, HTTP and CoAP fleets).");
                        }

                        devices[i] = new ProvisionedDevice(fleet, fleetIndex, number, name, foundId, existing.GetProperty("credentialsId").GetString()!);
                        continue;
                    }

                    var body = new JsonObject { ["name"] = name, ["type"] = fleet.Profile ?? "default" };
                    if (fleet.Profile is { } profile)
                    {
                        body["deviceProfileId"] = new JsonObject { ["id"] = profiles[profile], ["entityType"] = "DEVICE_PROFILE" };
                    }

                    ProvisionedGateway? gateway = null;
                    if (fleet.GatewayName is not null)
                    {
                        gateway = gateways[(fleetIndex, GatewayNumber(fleet, number))];
                        body["additionalInfo"] = new JsonObject { ["lastConnectedGateway"] = gateway.Id };
                    }

                    var saved = await BenchTenant.SendAsync(http, HttpMethod.Post, TenantToken, $"/api/device?accessToken={token}", body, cancellationToken);
                    var id = saved.GetProperty("id").GetProperty("id").GetString()!;
                    if (ProtocolCredentials.For(fleet.Protocol, RunId, fleetIndex, number) is { } credentials)
                    {
                        await BenchTenant.SendAsync(http, HttpMethod.Post, TenantToken, "/api/device/credentials", new JsonObject
                        {
                            ["deviceId"] = new JsonObject { ["id"] = id, ["entityType"] = "DEVICE" },
                            ["credentialsType"] = credentials.Type,
                            ["credentialsId"] = credentials.Id,
                            ["credentialsValue"] = credentials.Value,
                        }, cancellationToken);
                    }

                    devices[i] = new ProvisionedDevice(fleet, fleetIndex, number, name, id, token) { Gateway = gateway };
                    if (i % 500 == 499)
                    {
                        progress?.Report($"provisioned {i + 1} of {plan.Count} devices");
                    }
                }
            }, cancellationToken);
        }

        await Task.WhenAll(workers);
        return [.. devices];
    }

    /// <summary>How many points of <paramref name="key"/> the server holds for a device in the window.</summary>
    public async Task<long> CountPointsAsync(string deviceId, string key, long startMs, long endMs, CancellationToken cancellationToken)
    {
        var range = Math.Max(1, endMs - startMs);
        var result = await BenchTenant.SendAsync(http, HttpMethod.Get, TenantToken,
            string.Create(CultureInfo.InvariantCulture, $"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys={Uri.EscapeDataString(key)}&startTs={startMs}&endTs={endMs}&interval={range}&agg=COUNT&limit=10"),
            null, cancellationToken);
        long total = 0;
        if (result.ValueKind == JsonValueKind.Object && result.TryGetProperty(key, out var points))
        {
            foreach (var point in points.EnumerateArray())
            {
                var value = point.GetProperty("value");
                total += value.ValueKind == JsonValueKind.Number ? value.GetInt64() : long.Parse(value.GetString()!, CultureInfo.InvariantCulture);
            }
        }

        return total;
    }

    /// <summary>Every alarm of the run's tenant.</summary>
    public async Task<List<JsonElement>> AlarmsAsync(CancellationToken cancellationToken)
    {
        var alarms = new List<JsonElement>();
        for (var page = 0; ; page++)
        {
            var result = await BenchTenant.SendAsync(http, HttpMethod.Get, TenantToken, string.Create(CultureInfo.InvariantCulture, $"/api/v2/alarms?pageSize=1000&page={page}"), null, cancellationToken);
            alarms.AddRange(result.GetProperty("data").EnumerateArray());
            if (!result.GetProperty("hasNext").GetBoolean())
            {
                return alarms;
            }
        }
    }
}
