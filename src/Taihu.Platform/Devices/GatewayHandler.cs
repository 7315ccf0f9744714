using System.Buffers;
using System.Text.Json;
using Taihu.Mqtt;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Devices;

/// <summary>
/// ThingsBoard's gateway API: one connection speaks for many devices, named in each message. Devices behind a
/// gateway are created on first sight, in the gateway's tenant, with the default profile (or the profile named by
/// <c>type</c> on connect), and remember their gateway so shared-attribute updates reach it.
/// </summary>
public sealed class GatewayHandler(IDeviceStore store, DeviceService devices, DeviceDataService data, IAttributeStore attributes,
    DeviceMessaging messaging, ConnectivityTracker connectivity, Rpc.RpcService rpc, TimeProvider time)
{
    /// <summary>Handles a gateway topic (<paramref name="suffix"/> after <c>v1/gateway/</c>).</summary>
    public async ValueTask<ReasonCode> HandleAsync(DeviceSession gateway, string suffix, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        switch (suffix)
        {
            case "connect":
            {
                var (name, type) = ReadDeviceName(payload.Span);
                var child = await ChildAsync(gateway, name, type, cancellationToken);
                if (gateway.ConnectedChildren.TryAdd(name, true))
                {
                    connectivity.Connected(child);
                }

                // Persistent RPC calls waiting for the device go out through its gateway now.
                rpc.Reachable(child);

                return ReasonCode.Success;
            }

            case "disconnect":
            {
                var (name, _) = ReadDeviceName(payload.Span);
                var child = await ChildAsync(gateway, name, null, cancellationToken);
                if (gateway.ConnectedChildren.TryRemove(name, out _))
                {
                    connectivity.Disconnected(child);
                }

                return ReasonCode.Success;
            }

            case "telemetry":
                return await TelemetryAsync(gateway, payload, cancellationToken);
            case "attributes":
                await AttributesAsync(gateway, payload, cancellationToken);
                return ReasonCode.Success;
            case "attributes/request":
                await AttributeRequestAsync(gateway, payload, cancellationToken);
                return ReasonCode.Success;
            case "rpc":
                await RpcReplyAsync(gateway, payload, cancellationToken);
                return ReasonCode.Success;
            default:
                return ReasonCode.Success;
        }
    }

    /// <summary>The gateway's connection ended: the devices it reported connected are disconnected with it.</summary>
    public void GatewayDisconnected(DeviceSession gateway)
    {
        if (!gateway.HasConnectedChildren)
        {
            return;
        }

        foreach (var name in gateway.ConnectedChildren.Keys)
        {
            if (gateway.ConnectedChildren.TryRemove(name, out _) && gateway.Children.TryGetValue(name, out var child))
            {
                connectivity.Disconnected(child);
            }
        }
    }

    private async ValueTask<ReasonCode> TelemetryAsync(DeviceSession gateway, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        // {"Device A":[{"ts":..,"values":{..}}, ..], "Device B":[..]}: every device's points are parsed before any
        // is queued, so a bad part refuses the whole message and nothing of it is kept.
        var parsed = new List<(string Name, int Start, int Count)>();
        var points = new List<TelemetryPoint>();
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        ForEachDevice(payload.Span, (name, value) =>
        {
            var start = points.Count;
            data.ParseTelemetry(value, now, points);
            parsed.Add((name, start, points.Count - start));
        });

        // Every named device is resolved before any point is queued: a device the gateway may not speak for
        // refuses the whole message.
        var children = new Device[parsed.Count];
        for (var i = 0; i < parsed.Count; i++)
        {
            children[i] = await ChildAsync(gateway, parsed[i].Name, null, cancellationToken);
        }

        var pending = new List<Task>(parsed.Count);
        for (var i = 0; i < parsed.Count; i++)
        {
            connectivity.Activity(children[i]);
            pending.Add(data.SubmitPointsAsync(children[i], points, parsed[i].Start, parsed[i].Count, cancellationToken).AsTask());
        }

        var failed = false;
        foreach (var task in pending)
        {
            try
            {
                await task;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                failed = true;
            }
        }

        return failed ? ReasonCode.UnspecifiedError : ReasonCode.Success;
    }

    private async Task AttributesAsync(DeviceSession gateway, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var parsed = new List<(string Name, List<AttributeEntry> Entries)>();
        ForEachDevice(payload.Span, (name, value) =>
        {
            var entries = new List<AttributeEntry>();
            TelemetryParser.ParseAttributes(value, now, entries);
            parsed.Add((name, entries));
        });

        var children = new Device[parsed.Count];
        for (var i = 0; i < parsed.Count; i++)
        {
            children[i] = await ChildAsync(gateway, parsed[i].Name, null, cancellationToken);
        }

        for (var i = 0; i < parsed.Count; i++)
        {
            await attributes.SaveAsync(children[i].Seq, AttributeScope.Client, parsed[i].Entries, cancellationToken);
        }
    }

    /// <summary>
    /// A reply to a server-side call for a device behind the gateway: <c>{"device","id","data"}</c>. A device the
    /// gateway may not speak for is refused whole (0x87); a name no device has is a bad payload (no device is
    /// created for a reply).
    /// </summary>
    private async Task RpcReplyAsync(DeviceSession gateway, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        string? name = null;
        int? id = null;
        string data = "{}";
        try
        {
            using var document = JsonDocument.Parse(payload);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new PayloadException("A gateway RPC reply is a JSON object: {\"device\":\"..\",\"id\":1,\"data\":{..}}.");
            }

            if (root.TryGetProperty("device", out var d) && d.ValueKind == JsonValueKind.String)
            {
                name = d.GetString();
            }

            if (root.TryGetProperty("id", out var i) && i.ValueKind == JsonValueKind.Number && i.TryGetInt32(out var number))
            {
                id = number;
            }

            if (root.TryGetProperty("data", out var value))
            {
                data = value.GetRawText();
            }
        }
        catch (JsonException e)
        {
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }

        if (string.IsNullOrEmpty(name) || id is null)
        {
            throw new PayloadException("A gateway RPC reply needs \"device\" and a numeric \"id\".");
        }

        if (!gateway.Children.TryGetValue(name, out var child))
        {
            child = await store.GetDeviceByNameAsync(gateway.Device.TenantId, name, cancellationToken) ?? throw new PayloadException($"No device is named '{name}'.");
            if (child.GatewayId != gateway.Device.Id)
            {
                throw new NotGatewayChildException(name);
            }
        }

        await rpc.ReplyAsync(child, id.Value, System.Text.Encoding.UTF8.GetBytes(data));
    }

    private async Task AttributeRequestAsync(DeviceSession gateway, ReadOnlyMemory<byte> payload, CancellationToken cancellationToken)
    {
        // {"id":1,"device":"Device A","client":true,"key":"k"} or with "keys":["a","b"].
        long id = 0;
        string? name = null;
        var client = false;
        var keys = new List<string>();
        var single = false;
        try
        {
            var reader = new Utf8JsonReader(payload.Span);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new PayloadException("A gateway attribute request is a JSON object with id, device, client and key or keys.");
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var property = reader.GetString();
                reader.Read();
                switch (property)
                {
                    case "id" when reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out var number):
                        id = number;
                        break;
                    case "device" when reader.TokenType == JsonTokenType.String:
                        name = reader.GetString();
                        break;
                    case "client" when reader.TokenType is JsonTokenType.True or JsonTokenType.False:
                        client = reader.GetBoolean();
                        break;
                    case "key" when reader.TokenType == JsonTokenType.String:
                        keys.Add(reader.GetString()!);
                        single = true;
                        break;
                    case "keys" when reader.TokenType == JsonTokenType.StartArray:
                        while (reader.Read() && reader.TokenType == JsonTokenType.String)
                        {
                            keys.Add(reader.GetString()!);
                        }

                        break;
                    default:
                        reader.Skip();
                        break;
                }
            }
        }
        catch (JsonException e)
        {
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }

        if (string.IsNullOrEmpty(name))
        {
            throw new PayloadException("A gateway attribute request needs \"device\".");
        }

        var child = await ChildAsync(gateway, name, null, cancellationToken);
        var found = await attributes.GetAsync(child.Seq, client ? AttributeScope.Client : AttributeScope.Shared, keys.Count == 0 ? null : keys, cancellationToken);
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("id", id);
            writer.WriteString("device", name);
            if (single)
            {
                writer.WritePropertyName("value");
                if (found.Count > 0)
                {
                    found[0].Value.WriteTo(writer);
                }
                else
                {
                    writer.WriteNullValue();
                }
            }
            else
            {
                writer.WritePropertyName("values");
                DeviceMessaging.WriteEntries(writer, found);
            }

            writer.WriteEndObject();
        }

        messaging.Publish(gateway.Device.TenantId, gateway.GatewayPrefix + "attributes/response", buffer.WrittenSpan.ToArray());
    }

    private async Task<Device> ChildAsync(DeviceSession gateway, string name, string? type, CancellationToken cancellationToken)
    {
        if (gateway.Children.TryGetValue(name, out var known))
        {
            return known;
        }

        var tenant = gateway.Device.TenantId;
        var child = await store.GetDeviceByNameAsync(tenant, name, cancellationToken);
        if (child is null)
        {
            var profile = await store.GetDefaultProfileAsync(tenant, cancellationToken) ?? throw new InvalidOperationException("The tenant has no default device profile.");
            try
            {
                child = await devices.CreateInternalAsync(tenant, name, type, profile, gateway.Device.Id, null, cancellationToken);
            }
            catch (PlatformException e)
            {
                // Created meanwhile by another message: use it; a bad name is the gateway's fault.
                child = await store.GetDeviceByNameAsync(tenant, name, cancellationToken) ?? throw new PayloadException(e.Message);
            }
        }

        if (child.GatewayId != gateway.Device.Id)
        {
            // As ThingsBoard: a gateway speaks for the devices it created and those assigned to it, never for
            // another device of its tenant that happens to have that name.
            throw new NotGatewayChildException(name);
        }

        gateway.Children[name] = child;
        return child;
    }

    private static (string Name, string? Type) ReadDeviceName(ReadOnlySpan<byte> payload)
    {
        try
        {
            var reader = new Utf8JsonReader(payload);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new PayloadException("Expected {\"device\":\"name\"}.");
            }

            string? name = null;
            string? type = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var property = reader.GetString();
                reader.Read();
                if (property == "device" && reader.TokenType == JsonTokenType.String)
                {
                    name = reader.GetString();
                }
                else if (property == "type" && reader.TokenType == JsonTokenType.String)
                {
                    type = reader.GetString();
                }
                else
                {
                    reader.Skip();
                }
            }

            return string.IsNullOrEmpty(name) ? throw new PayloadException("\"device\" is required.") : (name, type);
        }
        catch (JsonException e)
        {
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }
    }

    private delegate void DeviceValue(string name, ReadOnlySpan<byte> value);

    /// <summary>Calls <paramref name="action"/> with each device name and the raw JSON of its value.</summary>
    private static void ForEachDevice(ReadOnlySpan<byte> payload, DeviceValue action)
    {
        try
        {
            var reader = new Utf8JsonReader(payload);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                throw new PayloadException("Expected a JSON object keyed by device name.");
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.GetString()!;
                if (name.Length == 0 || name.Length > DeviceService.MaxNameLength)
                {
                    throw new PayloadException($"A device name is 1 to {DeviceService.MaxNameLength} characters.");
                }

                reader.Read();
                var start = (int)reader.TokenStartIndex;
                reader.Skip();
                action(name, payload[start..(int)reader.BytesConsumed]);
            }
        }
        catch (JsonException e)
        {
            throw new PayloadException($"Invalid JSON: {e.Message}");
        }
    }
}

/// <summary>A gateway named a device that it did not create and that is not assigned to it.</summary>
public sealed class NotGatewayChildException(string deviceName)
    : Exception("The gateway may not speak for this device: it neither created it nor is assigned to it.")
{
    public string DeviceName { get; } = deviceName;
}
