using Taihu.Platform.Storage;

namespace Taihu.Platform.Tests;

/// <summary>Schema migrations.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Migrations_RunOnce()
    {
        Assert.Equal(0, await Database.MigrateAsync());
        using var again = new PlatformDatabase(Database.Dialect);
        Assert.Equal(0, await again.MigrateAsync());

        await using var connection = await Database.OpenAsync();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM schema_migrations";
        Assert.Equal(Migrations.Steps.Length, Convert.ToInt32(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture));
    }
}
