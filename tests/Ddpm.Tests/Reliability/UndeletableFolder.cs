using System.Diagnostics;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// Makes a folder's entries impossible to create or delete, as a folder that became read-only mid-run: <c>chmod a-w</c>
/// for a normal user, <c>chattr +i</c> for root, whom permissions do not stop (ext4 and other disk file systems).
/// </summary>
internal static class UndeletableFolder
{
    private static bool IsRoot => Environment.UserName == "root";

    /// <summary>
    /// Why this machine cannot do it (root on a file system without immutable folders, no chattr), or null.
    /// </summary>
    public static string? Unsupported { get; } = Probe();

    public static void Freeze(string folder) => Set(folder, frozen: true);

    public static void Thaw(string folder) => Set(folder, frozen: false);

    private static void Set(string folder, bool frozen)
    {
        if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException("Linux and macOS only");
        if (!IsRoot)
        {
            File.SetUnixFileMode(folder, frozen ? UnixFileMode.UserRead | UnixFileMode.UserExecute
                : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return;
        }
        var info = new ProcessStartInfo("chattr") { RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { frozen ? "+i" : "-i", folder }) info.ArgumentList.Add(a);
        using var chattr = ChildProcess.Launch(info);
        var error = chattr.StandardError.ReadToEnd();
        chattr.WaitForExit();
        if (chattr.ExitCode != 0) throw new IOException($"chattr {(frozen ? "+i" : "-i")} {folder}: {error.Trim()}");
    }

    private static string? Probe()
    {
        if (OperatingSystem.IsWindows()) return "Linux and macOS only";
        if (!IsRoot) return null;
        if (TestCategory.FastRun) return "the fast subset starts no processes (chattr)";
        var folder = TestPaths.TempDir("chattr-probe");
        try
        {
            Freeze(folder);
            Thaw(folder);
            return null;
        }
        catch (Exception e) when (e is IOException or System.ComponentModel.Win32Exception) { return $"running as root, and {e.Message}"; }
        finally { Directory.Delete(folder); }
    }
}

/// <summary>
/// A test that needs <see cref="UndeletableFolder"/>: skipped, with the reason, where the machine cannot.
/// </summary>
public sealed class UndeletableFolderFactAttribute : FactAttribute
{
    public UndeletableFolderFactAttribute()
    {
        if (UndeletableFolder.Unsupported is { } why) Skip = why;
    }
}
