using System.Data.Common;
using System.Globalization;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Storage;

/// <summary>Reading helpers that work the same on both providers.</summary>
public static class Sql
{
    /// <summary>An integer column, whichever width the provider returns.</summary>
    public static int GetInt(DbDataReader reader, int ordinal) => Convert.ToInt32(reader.GetValue(ordinal), CultureInfo.InvariantCulture);

    /// <summary>A 64-bit integer, whichever type the provider returns (PostgreSQL's SUM of BIGINT is NUMERIC).</summary>
    public static long GetInt64(DbDataReader reader, int ordinal) => Convert.ToInt64(reader.GetValue(ordinal), CultureInfo.InvariantCulture);

    /// <summary>A floating-point number, whichever type the provider returns.</summary>
    public static double GetDouble(DbDataReader reader, int ordinal) => Convert.ToDouble(reader.GetValue(ordinal), CultureInfo.InvariantCulture);

    /// <summary>A true/false column (INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL).</summary>
    public static bool GetBool(DbDataReader reader, int ordinal) => reader.GetValue(ordinal) switch
    {
        bool b => b,
        long l => l != 0,
        var other => Convert.ToBoolean(other, CultureInfo.InvariantCulture),
    };

    /// <summary>
    /// Refuses text that one of the providers cannot store: PostgreSQL's TEXT has no NUL character (U+0000) and
    /// fails the statement, where SQLite would keep it. Both refuse it here, with a 400 instead of a server error.
    /// </summary>
    public static void RequireStorableText(string? text)
    {
        if (text is not null && text.Contains('\0', StringComparison.Ordinal))
        {
            throw PlatformException.BadRequest("Text may not contain the NUL character (U+0000).");
        }
    }

    /// <summary>
    /// Refuses a telemetry or attribute value that one of the providers cannot store: text with NUL (see
    /// <see cref="RequireStorableText"/>), and NaN or an infinity, which SQLite refuses and PostgreSQL keeps
    /// (JSON has no way to write them either).
    /// </summary>
    public static void RequireStorable(string key, KvValue value)
    {
        RequireStorableText(key);
        RequireStorableText(value.Text);
        if (value.Type == DataType.Double && !double.IsFinite(value.Double))
        {
            throw PlatformException.BadRequest($"The value of '{key}' is not a finite number.");
        }
    }

    /// <summary>True when the provider refused a row for breaking a unique index.</summary>
    public static bool IsUniqueViolation(DbException e) => e switch
    {
        Microsoft.Data.Sqlite.SqliteException sqlite => sqlite.SqliteExtendedErrorCode is 2067 or 1555, // SQLITE_CONSTRAINT_UNIQUE, _PRIMARYKEY
        Npgsql.PostgresException postgres => postgres.SqlState == "23505",
        _ => false,
    };

    /// <summary>
    /// True when the provider refused a row for naming one that does not exist (any more): a write racing with the
    /// deletion of its tenant, profile or device.
    /// </summary>
    public static bool IsForeignKeyViolation(DbException e) => e switch
    {
        Microsoft.Data.Sqlite.SqliteException sqlite => sqlite.SqliteExtendedErrorCode == 787, // SQLITE_CONSTRAINT_FOREIGNKEY
        Npgsql.PostgresException postgres => postgres.SqlState == "23503",
        _ => false,
    };

    /// <summary>Adds a list's paging parameters: @limit, @offset, and @q (the search pattern) when there is one.</summary>
    public static void AddPaging(DbCommand command, PageRequest request)
    {
        command.AddParameter("limit", (long)request.Limit);
        command.AddParameter("offset", request.Offset);
        AddSearch(command, request);
    }

    /// <summary>Adds @q, the search pattern, when the request searches.</summary>
    public static void AddSearch(DbCommand command, PageRequest request)
    {
        if (request.LikePattern is { } pattern)
        {
            command.AddParameter("q", pattern);
        }
    }

    /// <summary>Runs a COUNT(*) for a list; <paramref name="bind"/> adds its filter parameters.</summary>
    public static async Task<long> CountAsync(DbConnection connection, string sql, PageRequest request, Action<DbCommand> bind, CancellationToken cancellationToken)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        AddSearch(command, request);
        bind(command);
        return Convert.ToInt64(await command.ExecuteScalarAsync(cancellationToken), CultureInfo.InvariantCulture);
    }

    /// <summary>Runs a write; a unique-index violation becomes a 409 that says <paramref name="conflict"/>.</summary>
    public static async Task<int> ExecuteUniqueAsync(DbCommand command, string conflict, CancellationToken cancellationToken)
    {
        try
        {
            return await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (DbException e) when (IsUniqueViolation(e))
        {
            throw PlatformException.Conflict(conflict);
        }
    }
}
