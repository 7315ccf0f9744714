using System.Globalization;
using System.Net;
using System.Text;
using Microsoft.Extensions.Options;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Rpc;
using Taihu.Platform.Security;
using Taihu.Platform.Telemetry;
using Taihu.Protocols.Coap;

namespace Taihu.Server.Protocols.Coap;

/// <summary>
/// ThingsBoard's CoAP device API on top of the message layer: <c>POST /api/v1/{token}/telemetry</c> and
/// <c>/attributes</c> (2.01 Created after the commit), <c>GET .../attributes</c> (2.05, observable for shared-attribute
/// updates), <c>GET .../rpc</c> observed for server-side RPC commands, <c>POST .../rpc/{id}</c> for the device's reply,
/// <c>POST .../rpc</c> for client-side RPC, and <c>POST /api/v1/provision</c>; block-wise transfer both ways.
/// </summary>
internal sealed partial class CoapDeviceApi(
    ProtocolDevices devices, DeviceDataService data, DeviceMessaging messaging, RpcService rpc, ClientRpcRequests clientRpc, ProvisioningService provisioning,
    DeviceAuthenticationLimiter limiter, IOptions<IngestOptions> ingest, IOptions<SecurityOptions> security, IOptions<CoapOptions> options, TimeProvider time,
    ILogger<CoapDeviceApi> logger)
{
    private const string Protocol = "coap";
    private readonly CoapOptions _options = options.Value;
    private readonly int _maxPayload = ingest.Value.MaxPayloadBytes;
    private readonly int _maxProvisionPayload = security.Value.MaxUnauthenticatedRequestBytes;
    private CoapListener? _listener;

    internal void Attach(CoapListener listener) => _listener = listener;

    private enum Resource
    {
        Telemetry,
        Attributes,
        Rpc,
        RpcReply,
        Provision,
    }

    /// <summary>What the options of a request say, read once from the datagram.</summary>
    private sealed record Route(Resource Resource, string? Token, byte[] TokenBytes, int RpcId, string? ClientKeys, string? SharedKeys, int Observe, CoapBlock? Block1, CoapBlock? Block2, uint? Size1, string Path);

    public async Task<CoapResponse> HandleAsync(CoapRequest request, CancellationToken cancellationToken)
    {
        try
        {
            var route = Parse(request, out var refusal);
            if (route is null)
            {
                return refusal!;
            }

            var body = request.Payload;
            if (route.Resource != Resource.Rpc && request.Header.Code == CoapCode.Post)
            {
                var limit = route.Resource == Resource.Provision ? _maxProvisionPayload : _maxPayload;
                if (route.Size1 > limit || body.Length > limit)
                {
                    return TooLarge(limit);
                }

                if (route.Block1 is { } block1)
                {
                    var (assembled, reply) = Assemble(request.Endpoint, route.Path, block1, body, limit);
                    if (reply is not null)
                    {
                        return reply;
                    }

                    body = assembled;
                }
            }

            var response = await DispatchAsync(request, route, body, cancellationToken);
            if (route.Block1 is { } last && response.Code < CoapCode.BadRequest)
            {
                response.Block1 = last with { More = false };
            }

            return Slice(response, route);
        }
        catch (PayloadException e)
        {
            devices.CountRejected(Protocol, "bad_payload");
            return CoapResponse.Error(CoapCode.BadRequest, e.Message);
        }
        catch (PlatformException e)
        {
            devices.CountRejected(Protocol, e.Status == 429 ? "rate_limited" : "refused");
            return new CoapResponse(e.Status switch
            {
                400 => CoapCode.BadRequest,
                401 => CoapCode.Unauthorized,
                403 => CoapCode.Forbidden,
                404 => CoapCode.NotFound,
                409 => (byte)0x89, // 4.09 Conflict (RFC 8132)
                413 => CoapCode.RequestEntityTooLarge,
                429 => CoapCode.TooManyRequests,
                _ => CoapCode.InternalServerError,
            }, Encoding.UTF8.GetBytes(e.Message))
            { MaxAge = e.RetryAfter is { } retry ? (uint)Math.Ceiling(retry.TotalSeconds) : null };
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogFailed(logger, request.Endpoint.Remote, e);
            return CoapResponse.Error(CoapCode.InternalServerError, "The request could not be handled; see the server's log.");
        }
    }

    private async Task<CoapResponse> DispatchAsync(CoapRequest request, Route route, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        var remote = request.Endpoint.Remote.Address;
        if (route.Resource == Resource.Provision)
        {
            return new CoapResponse(CoapCode.Created, await provisioning.ProvisionAsync(body, SourceAddress.Key(remote), cancellationToken)) { Json = true };
        }

        var device = Remembered(request.Endpoint, route.TokenBytes);
        if (device is null)
        {
            device = await AuthenticateAsync(route.Token!, remote, cancellationToken);
            if (device is null)
            {
                devices.CountRejected(Protocol, "unknown_device");
                return CoapResponse.Error(CoapCode.Unauthorized, "Unknown device access token.");
            }

            Remember(request.Endpoint, route.TokenBytes, device);
        }

        devices.Activity(device);
        var get = request.Header.Code == CoapCode.Get;
        switch (route.Resource)
        {
            case Resource.Telemetry:
                await data.SubmitTelemetryAsync(device, body.Span, cancellationToken);
                return new CoapResponse(CoapCode.Created);
            case Resource.Attributes when !get:
                await data.SaveClientAttributesAsync(device.Seq, body, cancellationToken);
                return new CoapResponse(CoapCode.Created);
            case Resource.Attributes:
                var attributes = new CoapResponse(CoapCode.Content, await data.AttributeResponseAsync(device.Seq, route.ClientKeys, route.SharedKeys, cancellationToken)) { Json = true };
                ObserveAttributes(request, route, device, attributes);
                return attributes;
            case Resource.Rpc when get:
                return ObserveRpc(request, route, device);
            case Resource.Rpc:
                var answer = await clientRpc.RequestAsync(device, null, body, cancellationToken);
                return new CoapResponse(CoapCode.Content, await answer.WaitAsync(cancellationToken)) { Json = true };
            default:
                return await rpc.ReplyAsync(device, route.RpcId, body.Span) switch
                {
                    RpcReplyResult.Accepted => new CoapResponse(CoapCode.Created),
                    RpcReplyResult.Finished => CoapResponse.Error(0x89, $"RPC call {route.RpcId} of this device has already ended (answered, timed out, expired or failed); the reply was not kept."),
                    _ => CoapResponse.Error(CoapCode.NotFound, $"RPC call {route.RpcId} of this device was not found."),
                };
        }
    }

    /// <summary>The device the endpoint authenticated as with this token, while <see cref="CoapOptions.AuthenticationLifetime"/> holds.</summary>
    private Device? Remembered(CoapEndpoint endpoint, byte[] token)
    {
        lock (endpoint.Gate)
        {
            return endpoint.Authenticated is { } known && known.Until > time.GetTimestamp() && known.Token.AsSpan().SequenceEqual(token) ? known.Device : null;
        }
    }

    private void Remember(CoapEndpoint endpoint, byte[] token, Device device)
    {
        if (_options.AuthenticationLifetime <= TimeSpan.Zero)
        {
            return;
        }

        lock (endpoint.Gate)
        {
            endpoint.Authenticated = (token, device, time.GetTimestamp() + (long)(_options.AuthenticationLifetime.TotalSeconds * time.TimestampFrequency));
        }
    }

    /// <summary>The device of an access token, within the source address's allowance of failed attempts (4.29 beyond it).</summary>
    private async Task<Device?> AuthenticateAsync(string token, IPAddress remote, CancellationToken cancellationToken)
    {
        var address = SourceAddress.Key(remote);
        var permit = await limiter.AcquireAsync(address, cancellationToken);
        if (!permit.Granted)
        {
            throw PlatformException.TooManyRequests(DeviceAuthenticationLimiter.Refusal(permit), permit.RetryAfter);
        }

        var outcome = AttemptOutcome.NotChecked;
        try
        {
            var found = await devices.FindAsync(DeviceService.TokenLookup(token), cancellationToken);
            outcome = found is { Type: CredentialsType.AccessToken } ? AttemptOutcome.Succeeded : AttemptOutcome.Failed;
            return outcome == AttemptOutcome.Succeeded ? found!.Device : null;
        }
        finally
        {
            limiter.Release(address, outcome);
        }
    }

    /// <summary>
    /// Observe 0 on <c>.../attributes</c> registers (or re-registers) an observation that is told of shared-attribute
    /// updates; Observe 1 deregisters. The response to the registration is the current attributes, with Observe.
    /// </summary>
    private void ObserveAttributes(CoapRequest request, Route route, Device device, CoapResponse response)
    {
        if (route.Observe < 0)
        {
            return;
        }

        var endpoint = request.Endpoint;
        var token = request.Header.Token(request.Datagram.Span).ToArray();
        lock (endpoint.Gate)
        {
            var existing = Find(endpoint, CoapObserved.Attributes, device);
            if (route.Observe == 1)
            {
                if (existing is not null)
                {
                    CoapListener.EndObservation(endpoint, existing);
                }

                return;
            }

            if (existing is null)
            {
                if (!TryMakeRoom(endpoint))
                {
                    return;
                }

                existing = new CoapObservation(_listener!, endpoint, CoapObserved.Attributes, device, token);
                endpoint.Observations.Add(existing);
                existing.Subscription = messaging.SubscribeSharedAttributes(device.Id, existing);
            }

            existing.Token = token;
            response.Observe = existing.NextSequence();
        }
    }

    /// <summary>
    /// Observe 0 on <c>.../rpc</c>: the device can be reached for RPC commands while it observes. The registration
    /// gets an empty ACK (commands follow as notifications, as ThingsBoard sends them); the session opens once that
    /// is sent, so that a command waiting for the device goes out after it. Observe 1 deregisters.
    /// </summary>
    private CoapResponse ObserveRpc(CoapRequest request, Route route, Device device)
    {
        if (route.Observe < 0)
        {
            devices.CountRejected(Protocol, "bad_request");
            return CoapResponse.Error(CoapCode.BadRequest, "Observe .../rpc (GET with Observe 0) to receive RPC commands; reply with POST .../rpc/{id}.");
        }

        var endpoint = request.Endpoint;
        var token = request.Header.Token(request.Datagram.Span).ToArray();
        lock (endpoint.Gate)
        {
            var existing = Find(endpoint, CoapObserved.Rpc, device);
            if (route.Observe == 1)
            {
                if (existing is not null)
                {
                    CoapListener.EndObservation(endpoint, existing);
                }

                return new CoapResponse(CoapCode.Content);
            }

            if (existing is not null)
            {
                existing.Token = token;
                return new CoapResponse(CoapCode.Empty);
            }

            if (!TryMakeRoom(endpoint))
            {
                return CoapResponse.Error(CoapCode.ServiceUnavailable, $"At most {_options.MaxObservationsPerEndpoint} observations per endpoint.");
            }

            var observation = new CoapObservation(_listener!, endpoint, CoapObserved.Rpc, device, token);
            endpoint.Observations.Add(observation);
            return new CoapResponse(CoapCode.Empty)
            {
                AfterSend = () =>
                {
                    var session = devices.Open(device, observation);
                    lock (endpoint.Gate)
                    {
                        observation.Session = session;
                        if (!observation.Ended)
                        {
                            return;
                        }
                    }

                    // Ended before the session was kept (a deregistration raced the open): close it now.
                    session.Dispose();
                },
            };
        }
    }

    private static CoapObservation? Find(CoapEndpoint endpoint, CoapObserved kind, Device device)
    {
        foreach (var observation in endpoint.Observations)
        {
            if (observation.Kind == kind && observation.Device.Id == device.Id)
            {
                return observation;
            }
        }

        return null;
    }

    private bool TryMakeRoom(CoapEndpoint endpoint)
    {
        if (endpoint.Observations.Count < _options.MaxObservationsPerEndpoint)
        {
            return true;
        }

        devices.CountRejected(Protocol, "too_many_observations");
        return false;
    }

    /// <summary>
    /// Block1 (RFC 7959 section 2.5): blocks of one upload arrive in order and are kept per endpoint and path; each
    /// but the last is answered 2.31 Continue; a block out of order is 4.08 and the total is held to the limit.
    /// </summary>
    private (ReadOnlyMemory<byte> Body, CoapResponse? Reply) Assemble(CoapEndpoint endpoint, string path, CoapBlock block, ReadOnlyMemory<byte> payload, int limit)
    {
        lock (endpoint.Gate)
        {
            var now = time.GetTimestamp();
            endpoint.Uploads.TryGetValue(path, out var upload);
            if (block.Number == 0)
            {
                if (upload is null && endpoint.Uploads.Count >= _options.MaxBlockTransfersPerEndpoint)
                {
                    devices.CountRejected(Protocol, "too_many_uploads");
                    return (default, CoapResponse.Error(CoapCode.ServiceUnavailable, $"At most {_options.MaxBlockTransfersPerEndpoint} block-wise uploads per endpoint at once."));
                }

                upload?.Dispose();
                upload = new CoapUpload(0);
                endpoint.Uploads[path] = upload;
            }
            else if (upload is null || upload.Received != block.Offset)
            {
                devices.CountRejected(Protocol, "incomplete");
                return (default, CoapResponse.Error(CoapCode.RequestEntityIncomplete, $"Block {block.Number} does not follow what was received ({upload?.Received ?? 0} bytes); start again from block 0."));
            }

            if (block.More && payload.Length != block.Size)
            {
                Drop(endpoint, path, upload);
                devices.CountRejected(Protocol, "bad_block");
                return (default, CoapResponse.Error(CoapCode.BadRequest, $"A block other than the last carries exactly its size ({block.Size} bytes)."));
            }

            if (upload.Received + payload.Length > limit)
            {
                Drop(endpoint, path, upload);
                return (default, TooLarge(limit));
            }

            upload.Append(payload.Span);
            upload.ExpiresAt = now + (long)(_options.ExchangeLifetime.TotalSeconds * time.TimestampFrequency);
            if (block.More)
            {
                return (default, new CoapResponse(CoapCode.Continue) { Block1 = block });
            }

            var body = upload.ToArray();
            Drop(endpoint, path, upload);
            return (body, null);
        }
    }

    private static void Drop(CoapEndpoint endpoint, string path, CoapUpload upload)
    {
        endpoint.Uploads.Remove(path);
        upload.Dispose();
    }

    private CoapResponse TooLarge(int limit)
    {
        devices.CountRejected(Protocol, "too_large");
        return new CoapResponse(CoapCode.RequestEntityTooLarge, Encoding.UTF8.GetBytes($"The payload is larger than {limit} bytes.")) { Size1 = (uint)limit };
    }

    /// <summary>Block2 (RFC 7959 section 2.4): a payload larger than a block goes out one block at a time, as asked.</summary>
    private CoapResponse Slice(CoapResponse response, Route route)
    {
        var length = response.Payload.Length;
        var exponent = route.Block2?.SizeExponent ?? CoapBlock.ExponentFor(_options.BlockSize);
        var size = 1 << (exponent + 4);
        if (length <= size && route.Block2 is null)
        {
            return response;
        }

        var number = route.Block2?.Number ?? 0;
        var offset = (long)number * size;
        if (offset >= length && length > 0)
        {
            return CoapResponse.Error(CoapCode.BadOption, $"Block {number} lies past the end of the {length}-byte response.");
        }

        var take = (int)Math.Min(size, length - offset);
        response.Block2 = new CoapBlock(number, offset + take < length, exponent);
        response.Size2 = number == 0 ? (uint)length : null;
        response.Payload = response.Payload.Slice((int)offset, take);
        return response;
    }

    /// <summary>
    /// Reads the route from the options: Uri-Path and Uri-Query, Observe, Block1/Block2, Size1; refuses an
    /// unrecognized critical option (4.02), an unknown path (4.04), a wrong method (4.05) and a Content-Format
    /// other than JSON or text (4.15).
    /// </summary>
    private Route? Parse(CoapRequest request, out CoapResponse? refusal)
    {
        refusal = null;
        Span<Range> segments = stackalloc Range[8];
        var segmentCount = 0;
        string? clientKeys = null, sharedKeys = null;
        var observe = -1;
        CoapBlock? block1 = null, block2 = null;
        uint? size1 = null;
        foreach (var option in request.OptionList)
        {
            var value = request.Value(option);
            switch (option.Number)
            {
                case CoapOption.UriPath:
                    if (segmentCount == segments.Length)
                    {
                        return NotFound(out refusal);
                    }

                    segments[segmentCount++] = new Range(option.Offset, option.Offset + option.Length);
                    break;
                case CoapOption.UriQuery:
                    if (value.StartsWith("clientKeys="u8))
                    {
                        clientKeys = Encoding.UTF8.GetString(value["clientKeys="u8.Length..]);
                    }
                    else if (value.StartsWith("sharedKeys="u8))
                    {
                        sharedKeys = Encoding.UTF8.GetString(value["sharedKeys="u8.Length..]);
                    }

                    break;
                case CoapOption.Observe:
                    observe = value.Length <= 3 ? (int)CoapParser.ReadUInt(value) : 2;
                    break;
                case CoapOption.Block1 or CoapOption.Block2:
                    if (!CoapBlock.TryDecode(value, out var block))
                    {
                        devices.CountRejected(Protocol, "bad_option");
                        refusal = CoapResponse.Error(CoapCode.BadRequest, "The block option is malformed (size exponent 7 is reserved).");
                        return null;
                    }

                    if (option.Number == CoapOption.Block1)
                    {
                        block1 = block;
                    }
                    else
                    {
                        block2 = block;
                    }

                    break;
                case CoapOption.Size1:
                    size1 = CoapParser.ReadUInt(value);
                    break;
                case CoapOption.ContentFormat:
                    if (CoapParser.ReadUInt(value) is not (CoapOption.FormatJson or CoapOption.FormatText))
                    {
                        devices.CountRejected(Protocol, "bad_content_format");
                        refusal = CoapResponse.Error(CoapCode.UnsupportedContentFormat, "Payloads are JSON (Content-Format 50) or text holding JSON (0).");
                        return null;
                    }

                    break;
                case CoapOption.UriHost or CoapOption.UriPort or CoapOption.Accept:
                    break;
                default:
                    if (CoapOption.IsCritical(option.Number))
                    {
                        devices.CountRejected(Protocol, "bad_option");
                        refusal = CoapResponse.Error(CoapCode.BadOption, $"Option {option.Number} is not supported.");
                        return null;
                    }

                    break;
            }
        }

        if (observe > 1)
        {
            observe = -1;
        }

        var datagram = request.Datagram.Span;
        if (segmentCount < 3 || !datagram[segments[0]].SequenceEqual("api"u8) || !datagram[segments[1]].SequenceEqual("v1"u8))
        {
            return NotFound(out refusal);
        }

        var code = request.Header.Code;
        var path = Encoding.UTF8.GetString(datagram[segments[0].Start.Value..segments[segmentCount - 1].End.Value]);
        if (segmentCount == 3)
        {
            if (!datagram[segments[2]].SequenceEqual("provision"u8))
            {
                return NotFound(out refusal);
            }

            return code == CoapCode.Post ? new Route(Resource.Provision, null, [], 0, null, null, -1, block1, block2, size1, path) : MethodNotAllowed(out refusal);
        }

        var name = datagram[segments[3]];
        Resource resource;
        var rpcId = 0;
        if (segmentCount == 4 && name.SequenceEqual("telemetry"u8))
        {
            resource = Resource.Telemetry;
            if (code != CoapCode.Post)
            {
                return MethodNotAllowed(out refusal);
            }
        }
        else if (segmentCount == 4 && name.SequenceEqual("attributes"u8))
        {
            resource = Resource.Attributes;
            if (code is not (CoapCode.Post or CoapCode.Get))
            {
                return MethodNotAllowed(out refusal);
            }
        }
        else if (segmentCount == 4 && name.SequenceEqual("rpc"u8))
        {
            resource = Resource.Rpc;
            if (code is not (CoapCode.Post or CoapCode.Get))
            {
                return MethodNotAllowed(out refusal);
            }
        }
        else if (segmentCount == 5 && name.SequenceEqual("rpc"u8))
        {
            resource = Resource.RpcReply;
            if (code != CoapCode.Post)
            {
                return MethodNotAllowed(out refusal);
            }

            if (!int.TryParse(datagram[segments[4]], NumberStyles.None, CultureInfo.InvariantCulture, out rpcId) || rpcId <= 0)
            {
                devices.CountRejected(Protocol, "bad_request");
                refusal = CoapResponse.Error(CoapCode.BadRequest, "The RPC request id is a positive whole number, as in the command received.");
                return null;
            }
        }
        else
        {
            return NotFound(out refusal);
        }

        var tokenBytes = datagram[segments[2]].ToArray();
        return new Route(resource, Encoding.UTF8.GetString(tokenBytes), tokenBytes, rpcId, clientKeys, sharedKeys, code == CoapCode.Get ? observe : -1, block1, code == CoapCode.Get ? block2 : null, size1, path);
    }

    private Route? NotFound(out CoapResponse refusal)
    {
        devices.CountRejected(Protocol, "not_found");
        refusal = CoapResponse.Error(CoapCode.NotFound, "Not found: the paths are /api/v1/{token}/telemetry, /attributes, /rpc, /rpc/{id} and /api/v1/provision.");
        return null;
    }

    private Route? MethodNotAllowed(out CoapResponse refusal)
    {
        devices.CountRejected(Protocol, "method_not_allowed");
        refusal = CoapResponse.Error(CoapCode.MethodNotAllowed, "Method not allowed: telemetry, provision and rpc/{id} take POST; attributes and rpc take POST and GET.");
        return null;
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Error, Message = "CoAP request from {Remote} failed")]
    private static partial void LogFailed(ILogger logger, IPEndPoint remote, Exception exception);
}
