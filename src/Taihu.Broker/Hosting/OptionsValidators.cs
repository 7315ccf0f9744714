using Microsoft.Extensions.Options;

namespace Taihu.Broker.Hosting;

/// <summary>Checks <see cref="BrokerOptions"/> when they are first built (at start, with ValidateOnStart).</summary>
internal sealed class BrokerOptionsValidator : IValidateOptions<BrokerOptions>
{
    public ValidateOptionsResult Validate(string? name, BrokerOptions options) => OptionsProblems.Result(options.Validate());
}

/// <summary>Checks <see cref="ListenerOptions"/> when they are first built (at start, with ValidateOnStart).</summary>
internal sealed class ListenerOptionsValidator : IValidateOptions<ListenerOptions>
{
    public ValidateOptionsResult Validate(string? name, ListenerOptions options) => OptionsProblems.Result(options.Validate());
}

/// <summary>Turns the plain-English problems an options class reports into a validation result.</summary>
public static class OptionsProblems
{
    public static ValidateOptionsResult Result(IEnumerable<string> problems)
    {
        ArgumentNullException.ThrowIfNull(problems);
        var list = problems.ToList();
        return list.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(list);
    }
}
