using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;
using Taihu.Platform.BrokerUsers;

namespace Taihu.Platform.Hosting;

/// <summary>Checks <see cref="StorageOptions"/> when they are first built (at start, with ValidateOnStart).</summary>
internal sealed class StorageOptionsValidator : IValidateOptions<StorageOptions>
{
    public ValidateOptionsResult Validate(string? name, StorageOptions options) => OptionsProblems.Result(options.Validate());
}

/// <summary>Checks <see cref="IngestOptions"/> when they are first built (at start, with ValidateOnStart).</summary>
internal sealed class IngestOptionsValidator : IValidateOptions<IngestOptions>
{
    public ValidateOptionsResult Validate(string? name, IngestOptions options) => OptionsProblems.Result(options.Validate());
}

/// <summary>
/// Checks <see cref="SecurityOptions"/> when they are first built (at start, with ValidateOnStart), and then the
/// Mosquitto password and ACL files they name: those problems name a file and a line, so they are looked for only
/// once the settings themselves are valid.
/// </summary>
internal sealed class SecurityOptionsValidator : IValidateOptions<SecurityOptions>
{
    public ValidateOptionsResult Validate(string? name, SecurityOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        return OptionsProblems.Result(problems.Count > 0 ? problems : BrokerUserDirectory.FindProblems(options));
    }
}
