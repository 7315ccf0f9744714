using System.Xml.Linq;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.Repositories;
using Taihu.Cluster;
using Taihu.Platform.Storage;

namespace Taihu.Server;

/// <summary>
/// ASP.NET Core's data protection keys (what signs and encrypts the console's sign-in cookie and its forms'
/// antiforgery tokens) on a cluster: kept in the shared database's settings, so that a console session made on one
/// node is good on every node behind a load balancer. A single server keeps ASP.NET Core's default place.
/// </summary>
internal static class ClusterKeyRing
{
    /// <summary>The settings' name prefix of the keys; each key is one row (its XML as the value).</summary>
    internal const string Prefix = "data_protection_key:";

    public static IServiceCollection AddClusterKeyRing(this IServiceCollection services, IConfiguration configuration)
    {
        if (configuration.GetValue<bool>($"{ClusterNodeOptions.SectionName}:{nameof(ClusterNodeOptions.Enabled)}"))
        {
            // The host starts its services one after the other, each in the continuation of the one before; when
            // that one finished on a socket completion, which this server runs inline on the socket threads
            // (SocketCompletions), data protection's start would read the keys synchronously on a socket thread and
            // wait for a reply that thread itself must deliver. This one hops to the thread pool first.
            services.AddHostedService<OffTheSocketThreads>();
            // One application name on every node: by default it is the content root, which differs between machines.
            services.AddDataProtection().SetApplicationName("Taihu");
            services.AddOptions<KeyManagementOptions>().Configure<PlatformDatabase>((options, database) => options.XmlRepository = new SettingsXmlRepository(database));
        }

        return services;
    }

    private sealed class OffTheSocketThreads : IHostedService
    {
        public async Task StartAsync(CancellationToken cancellationToken) => await Task.Yield();

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    /// <summary>
    /// The key ring as rows of the settings table. ASP.NET Core reads it rarely (at start, when keys roll over, and
    /// when a cookie names a key it has not seen, such as one another node made) and synchronously, sometimes from
    /// a Blazor renderer's synchronization context: so the queries are synchronous too (a cluster is PostgreSQL).
    /// </summary>
    internal sealed class SettingsXmlRepository(PlatformDatabase database) : IXmlRepository
    {
        public IReadOnlyCollection<XElement> GetAllElements()
        {
            using var connection = database.Dialect.CreateConnection();
            connection.Open();
            using var command = connection.CreateCommand();
            // substr rather than LIKE, so that the prefix's '_' means itself.
            command.CommandText = $"SELECT value FROM settings WHERE substr(name, 1, {Prefix.Length}) = @prefix ORDER BY name";
            command.AddParameter("prefix", Prefix);
            var elements = new List<XElement>();
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                elements.Add(XElement.Parse(reader.GetString(0)));
            }

            return elements;
        }

        public void StoreElement(XElement element, string friendlyName)
        {
            // A key's name is unique (its id); two nodes making a key at once both keep theirs, and both are in the ring.
            using var connection = database.Dialect.CreateConnection();
            connection.Open();
            using var command = connection.CreateCommand();
            command.CommandText = "INSERT INTO settings (name, value) VALUES (@name, @value) ON CONFLICT (name) DO NOTHING";
            command.AddParameter("name", Prefix + friendlyName);
            command.AddParameter("value", element.ToString(SaveOptions.DisableFormatting));
            command.ExecuteNonQuery();
        }
    }
}
