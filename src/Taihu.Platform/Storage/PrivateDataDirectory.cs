namespace Taihu.Platform.Storage;

/// <summary>
/// The data directory holds access-token hashes, provisioning secrets, activation tokens and signing keys, so it
/// and its files are private to the server's user (0700 and 0600), as PostgreSQL insists for its own data
/// directory. SQLite creates a database, its WAL and shared-memory files with the permissions of the database
/// file (0644 by default), so the database file is made 0600 before SQLite first opens it; files left readable
/// by an earlier version are tightened at start.
/// </summary>
public static class PrivateDataDirectory
{
    private const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode PrivateFileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>Creates <paramref name="directory"/> private, or makes an existing one and its files private.</summary>
    public static void Ensure(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
            return;
        }

        Directory.CreateDirectory(directory, DirectoryMode);
        File.SetUnixFileMode(directory, DirectoryMode);
        foreach (var file in Directory.EnumerateFiles(directory))
        {
            if ((File.GetUnixFileMode(file) & ~PrivateFileMode) != 0)
            {
                File.SetUnixFileMode(file, File.GetUnixFileMode(file) & PrivateFileMode);
            }
        }
    }

    /// <summary>Creates the file empty and private when it does not exist (SQLite takes an empty file as a new database).</summary>
    public static void CreatePrivateFile(string path)
    {
        if (OperatingSystem.IsWindows() || File.Exists(path))
        {
            return;
        }

        try
        {
            using var stream = new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = PrivateFileMode });
        }
        catch (IOException) when (File.Exists(path))
        {
            // Created meanwhile by another process; Ensure tightens it.
        }
    }
}
