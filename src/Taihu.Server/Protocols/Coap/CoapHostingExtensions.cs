using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Taihu.Server.Protocols.Coap;

public static class CoapHostingExtensions
{
    /// <summary>The CoAP listener on <c>Listeners:CoapPort</c> (UDP), with its settings from the <c>Coap</c> section.</summary>
    public static WebApplicationBuilder AddCoapListener(this WebApplicationBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.AddOptions<CoapOptions>().BindConfiguration(CoapOptions.SectionName).ValidateOnStart();
        builder.Services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<CoapOptions>, CoapOptionsValidator>());
        builder.Services.AddSingleton<CoapDeviceApi>();
        builder.Services.AddSingleton<CoapListener>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<CoapListener>());
        return builder;
    }
}
