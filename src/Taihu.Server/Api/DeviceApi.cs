using System.Text.Json;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Rules;
using Taihu.Platform.Security;

namespace Taihu.Server.Api;

/// <summary>Devices, device profiles and credentials, in ThingsBoard's shapes.</summary>
public static class DeviceApi
{
    public static IEndpointRouteBuilder MapDeviceApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("Devices");
        api.MapPost("/device", async (JsonElement body, string? accessToken, HttpContext context, IDeviceService devices, DeviceAuthenticationLimiter limiter, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            var draft = ReadDraft(body);
            var device = CallerResolution.EntityId(body, "id") is { } id
                ? await devices.UpdateAsync(caller, id, draft, ct)
                : accessToken is null
                    ? await devices.CreateAsync(caller, draft, null, ct)
                    : await ChargedAsync(context, limiter, () => devices.CreateAsync(caller, draft, new CredentialsDraft(CredentialsType.AccessToken, accessToken, null, null, null, null), ct), ct);
            return Results.Ok(device.ToDto());
        }).WithName("SaveDevice").WithSummary("Creates a device (or updates one when the body has an id); ?accessToken= sets its token.");

        api.MapGet("/device/{id:guid}", async (Guid id, HttpContext context, IDeviceService devices, CancellationToken ct) =>
            Results.Ok((await devices.GetAsync(await context.CallerAsync(), id, ct)).ToDto())).WithName("GetDevice");

        api.MapDelete("/device/{id:guid}", async (Guid id, HttpContext context, IDeviceService devices, CancellationToken ct) =>
        {
            await devices.DeleteAsync(await context.CallerAsync(), id, ct);
            return Results.Ok();
        }).WithName("DeleteDevice").WithSummary("Deletes a device with its data; its connections are closed.");

        api.MapGet("/tenant/devices", async (int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, string? type, HttpContext context, IDeviceService devices, CancellationToken ct) =>
            Results.Ok((await devices.ListAsync(await context.CallerAsync(), Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), type, ct)).Map(d => d.ToDto())))
            .WithName("ListTenantDevices").WithSummary("Devices of the caller's tenant, a page at a time.");

        api.MapGet("/tenant/devices/{name}", async (string name, HttpContext context, IDeviceService devices, CancellationToken ct) =>
            Results.Ok((await devices.GetByNameAsync(await context.CallerAsync(), name, ct)).ToDto())).WithName("GetTenantDeviceByName");

        api.MapGet("/device/{id:guid}/credentials", async (Guid id, HttpContext context, IDeviceService devices, CancellationToken ct) =>
            Results.Ok((await devices.GetCredentialsAsync(await context.CallerAsync(), id, ct)).ToDto()))
            .WithName("GetDeviceCredentials").WithSummary("The device's credentials: the access token, or the MQTT basic names, or the certificate thumbprint.");

        api.MapPost("/device/credentials", async (JsonElement body, HttpContext context, IDeviceService devices, DeviceAuthenticationLimiter limiter, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            var deviceId = CallerResolution.EntityId(body, "deviceId") ?? throw PlatformException.BadRequest("deviceId is required.");
            if (!DeviceCredentials.TryParseType(CallerResolution.Text(body, "credentialsType"), out var type))
            {
                throw PlatformException.BadRequest("credentialsType is ACCESS_TOKEN, MQTT_BASIC, X509_CERTIFICATE, HJ212 or JT808.");
            }

            var value = CallerResolution.Text(body, "credentialsValue");
            CredentialsDraft draft;
            if (type == CredentialsType.MqttBasic)
            {
                if (value is null)
                {
                    throw PlatformException.BadRequest("MQTT_BASIC needs credentialsValue: {\"clientId\":..,\"userName\":..,\"password\":..} as a string.");
                }

                using var basic = JsonDocument.Parse(value);
                draft = new CredentialsDraft(type, null, CallerResolution.Text(basic.RootElement, "clientId"), CallerResolution.Text(basic.RootElement, "userName"),
                    CallerResolution.Text(basic.RootElement, "password"), null);
            }
            else if (type is CredentialsType.Hj212 or CredentialsType.Jt808)
            {
                // HJ212: credentialsId is the MN, credentialsValue the PW. JT808: the phone number and the authentication code.
                draft = new CredentialsDraft(type, CallerResolution.Text(body, "credentialsId"), null, null, value, null);
            }
            else
            {
                draft = new CredentialsDraft(type, CallerResolution.Text(body, "credentialsId"), null, null, null, type == CredentialsType.X509Certificate ? value : null);
            }

            return Results.Ok((await ChargedAsync(context, limiter, () => devices.SetCredentialsAsync(caller, deviceId, draft, ct), ct)).ToDto());
        }).WithName("SaveDeviceCredentials").WithSummary("Replaces a device's credentials; connections that used the old ones are closed.");

        var profiles = app.MapGroup("/api").WithTags("Device profiles");
        profiles.MapGet("/deviceProfile/{id:guid}", async (Guid id, HttpContext context, IDeviceService devices, CancellationToken ct) =>
            Results.Ok((await devices.GetProfileAsync(await context.CallerAsync(), id, ct)).ToDto())).WithName("GetDeviceProfile");

        profiles.MapGet("/deviceProfileInfo/default", async (HttpContext context, IDeviceService devices, CancellationToken ct) =>
            Results.Ok((await devices.GetDefaultProfileAsync(await context.CallerAsync(), ct)).ToDto())).WithName("GetDefaultDeviceProfile");

        profiles.MapGet("/deviceProfiles", async (int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, HttpContext context, IDeviceService devices, CancellationToken ct) =>
            Results.Ok((await devices.ListProfilesAsync(await context.CallerAsync(), Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder), ct)).Map(p => p.ToDto())))
            .WithName("ListDeviceProfiles");

        profiles.MapPost("/deviceProfile", async (JsonElement body, HttpContext context, IDeviceService devices, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            var provisionType = CallerResolution.Text(body, "provisionType");
            string? key = CallerResolution.Text(body, "provisionDeviceKey");
            string? secret = null;
            long inactivity = 0;
            PublishRateLimits? rateLimits = null;
            string? alarms = null;
            if (body.TryGetProperty("profileData", out var data) && data.ValueKind == JsonValueKind.Object)
            {
                if (data.TryGetProperty("alarms", out var rules) && rules.ValueKind != JsonValueKind.Null)
                {
                    // Parsed only to refuse a bad rule (400 naming its JSON path); stored as sent, so GET returns every field.
                    _ = AlarmRuleParser.Parse(rules);
                    alarms = rules.GetRawText();
                }

                if (data.TryGetProperty("rateLimits", out var limits) && limits.ValueKind == JsonValueKind.Object)
                {
                    rateLimits = PublishRateLimits.Of(
                        limits.TryGetProperty("maxPublishRate", out var rate) && rate.ValueKind == JsonValueKind.Number ? rate.GetInt32() : null,
                        limits.TryGetProperty("maxPublishBytesRate", out var bytes) && bytes.ValueKind == JsonValueKind.Number ? bytes.GetInt64() : null);
                }

                if (data.TryGetProperty("provisionConfiguration", out var provision) && provision.ValueKind == JsonValueKind.Object)
                {
                    provisionType ??= CallerResolution.Text(provision, "type");
                    key ??= CallerResolution.Text(provision, "provisionDeviceKey");
                    secret = CallerResolution.Text(provision, "provisionDeviceSecret");
                }

                if (data.TryGetProperty("inactivityTimeoutMs", out var timeout) && timeout.ValueKind == JsonValueKind.Number)
                {
                    inactivity = timeout.GetInt64();
                }
            }

            if (!DeviceProfile.TryParseProvisionType(provisionType, out var type))
            {
                throw PlatformException.BadRequest("provisionType is DISABLED, ALLOW_CREATE_NEW_DEVICES or CHECK_PRE_PROVISIONED_DEVICES.");
            }

            var profile = new DeviceProfile(CallerResolution.EntityId(body, "id") ?? Guid.Empty, Guid.Empty, CallerResolution.Text(body, "name") ?? "",
                CallerResolution.Text(body, "description"), false, type, key, secret, inactivity, 0, rateLimits, alarms);
            return Results.Ok((await devices.SaveProfileAsync(caller, profile, ct)).ToDto());
        }).WithName("SaveDeviceProfile").WithSummary("Creates or updates a device profile: provisioning strategy, key and secret, inactivity timeout, publish rate limits, alarm rules.");

        profiles.MapDelete("/deviceProfile/{id:guid}", async (Guid id, HttpContext context, IDeviceService devices, CancellationToken ct) =>
        {
            await devices.DeleteProfileAsync(await context.CallerAsync(), id, ct);
            return Results.Ok();
        }).WithName("DeleteDeviceProfile");
        return app;
    }

    /// <summary>
    /// Saves credentials the caller chose. A conflict tells that another device (maybe another tenant's) holds them,
    /// so it is counted against the caller's address like a failed device authentication, and refused (429) once
    /// that allowance is used up: trying tokens here is no cheaper than trying them over MQTT.
    /// </summary>
    private static async Task<T> ChargedAsync<T>(HttpContext context, DeviceAuthenticationLimiter limiter, Func<Task<T>> save, CancellationToken ct)
    {
        var address = await limiter.AcquireOrThrowAsync(context.Connection.RemoteIpAddress, ct);
        var outcome = AttemptOutcome.NotChecked;
        try
        {
            var saved = await save();
            outcome = AttemptOutcome.Succeeded;
            return saved;
        }
        catch (CredentialsInUseException)
        {
            outcome = AttemptOutcome.Failed;
            throw;
        }
        finally
        {
            limiter.Release(address, outcome);
        }
    }

    private static DeviceDraft ReadDraft(JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            throw PlatformException.BadRequest("A device is a JSON object with at least \"name\".");
        }

        var gateway = false;
        string? group = null;
        var assignsGateway = false;
        Guid? gatewayId = null;
        if (body.TryGetProperty("additionalInfo", out var info) && info.ValueKind == JsonValueKind.Object)
        {
            gateway = info.TryGetProperty("gateway", out var g) && g.ValueKind == JsonValueKind.True;
            group = CallerResolution.Text(info, "group");
            // The gateway that may speak for this device (ThingsBoard's lastConnectedGateway): a gateway's id, or null for none.
            if (info.TryGetProperty("lastConnectedGateway", out var assigned))
            {
                assignsGateway = true;
                gatewayId = assigned.ValueKind switch
                {
                    JsonValueKind.Null => null,
                    JsonValueKind.String when Guid.TryParse(assigned.GetString(), out var parsed) => parsed,
                    _ => throw PlatformException.BadRequest("additionalInfo.lastConnectedGateway is a gateway device's id, or null."),
                };
            }
        }

        return new DeviceDraft(CallerResolution.Text(body, "name") ?? "", CallerResolution.Text(body, "type"), CallerResolution.Text(body, "label"),
            CallerResolution.EntityId(body, "deviceProfileId"), group ?? CallerResolution.Text(body, "group"), gateway, assignsGateway, gatewayId);
    }
}
