using System.Runtime.InteropServices;

namespace Ddpm.IO;

/// <summary>
/// POSIX durability helpers: fsync of a directory (so a rename inside it survives a power loss, not only a crash) and
/// hard links. Both are best-effort on platforms without them (Windows), where they do nothing or report false.
/// </summary>
internal static partial class FileDurability
{
    private const int ReadOnly = 0, Directory = 0x10000; // O_RDONLY, O_DIRECTORY (Linux)

    /// <summary>Flushes <paramref name="directory"/>'s entries (a rename or unlink inside it) to disk where the OS
    /// allows.</summary>
    public static void FsyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux()) return;
        int fd = open(directory, ReadOnly | Directory);
        if (fd < 0) return; // best effort: the rename itself already happened atomically
        try { _ = fsync(fd); }
        finally { _ = close(fd); }
    }

    /// <summary>Creates <paramref name="link"/> as a second name of <paramref name="existing"/>; false where
    /// unsupported or failed.</summary>
    public static bool TryHardLink(string existing, string link) =>
        (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS()) && Link(existing, link) == 0;

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync")]
    private static partial int fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int close(int fd);

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string existing, string link);
}
