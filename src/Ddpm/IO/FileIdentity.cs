using System.Runtime.InteropServices;

namespace Ddpm.IO;

/// <summary>
/// Whether two paths name the same file: the same full path after following symbolic links, or (on Linux) the same
/// device and inode, which also catches hard links and bind mounts. Used to refuse writing a command's output over its
/// input.
/// </summary>
internal static partial class FileIdentity
{
    /// <summary>True when both exist and are one file; false when either is missing.</summary>
    public static bool SameFile(string a, string b)
    {
        if (!File.Exists(a) || !File.Exists(b)) return false;
        if (string.Equals(Resolve(a), Resolve(b), OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
            return true;
        return Id(a) is { } x && Id(b) is { } y && x == y;
    }

    private static string Resolve(string path)
    {
        var full = Path.GetFullPath(path);
        try { return new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full; }
        catch (IOException) { return full; }
    }

    /// <summary>(st_dev, st_ino) on Linux, where both lead struct stat as 64-bit fields (x86-64 and arm64); null
    /// elsewhere.</summary>
    private static (ulong Device, ulong Inode)? Id(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        var buffer = new byte[256]; // sizeof(struct stat) is 144 (x86-64) or 128 (arm64)
        try
        {
            if (Stat(path, buffer) != 0) return null;
        }
        catch (EntryPointNotFoundException) { return null; } // glibc before 2.33 exports stat only as __xstat
        return (BitConverter.ToUInt64(buffer, 0), BitConverter.ToUInt64(buffer, 8));
    }

    [LibraryImport("libc", EntryPoint = "stat", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Stat(string path, [Out] byte[] buffer);
}
