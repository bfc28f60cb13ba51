using System.Text;

namespace Ddpm.IO;

/// <summary>
/// Checks a path before any work, so that a bad input or output path is one clear line naming it and the problem (a
/// missing file, a folder where a file belongs or the reverse, a symbolic link loop, a name longer than the file system
/// allows, an unwritable folder) rather than a stack trace after minutes of work. Problems are
/// <see cref="IOException"/>s whose message starts with what the path is (e.g. <c>--out 'x'</c>); the path is shortened
/// when very long.
/// </summary>
internal static class PathCheck
{
    /// <summary>The longest file or folder name Linux and macOS file systems accept, in UTF-8 bytes.</summary>
    public const int MaxNameBytes = 255;
    /// <summary>The longest path Linux accepts (PATH_MAX, with its terminating zero).</summary>
    public const int MaxPathBytes = 4095;

    /// <summary>The problem with reading <paramref name="path"/> as a file, or null when it is an existing
    /// file.</summary>
    public static string? FileProblem(string path)
    {
        if (NameProblem(path) is { } bad) return bad;
        if (IsLinkLoop(path)) return "is a symbolic link loop";
        if (Directory.Exists(path)) return "is a folder, not a file";
        if (!File.Exists(path)) return "does not exist";
        if (RegularFile.SpecialKind(path) is { } kind) return $"is {kind}, not a regular file";
        return null;
    }

    /// <summary>
    /// Throws unless <paramref name="folder"/> is, or can be created as, a writable folder: the nearest existing folder
    /// on the path is probed with a temporary file (removed at once); nothing is created. <paramref name="what"/> names
    /// the path in the message (<c>--out</c>).
    /// </summary>
    public static void EnsureWritableFolder(string folder, string what)
    {
        IOException Bad(string problem) => new($"{what} '{Shorten(folder)}': {problem}");
        if (string.IsNullOrWhiteSpace(folder)) throw new IOException($"{what}: the path is empty");
        if (NameProblem(folder) is { } bad) throw Bad(bad);
        var full = Path.GetFullPath(folder);
        for (string? d = full; d is not null; d = Path.GetDirectoryName(d))
        {
            var here = d == full ? "" : $"'{Shorten(d)}' on its path ";
            if (IsLinkLoop(d)) throw Bad($"{here}is a symbolic link loop");
            if (File.Exists(d)) throw Bad($"{here}is a file, not a folder");
            if (!Directory.Exists(d)) continue;
            var probe = Path.Combine(d, $".ddpm-write-test-{Environment.ProcessId}");
            try
            {
                using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw Bad(d == full ? $"cannot be written ({e.Message})" : $"cannot be created in '{Shorten(d)}' ({e.Message})");
            }
            return;
        }
        throw Bad("has no existing folder on its path");
    }

    /// <summary>Throws unless a file can be written at <paramref name="file"/>: not a folder, in a writable
    /// folder.</summary>
    public static void EnsureWritableFile(string file, string what)
    {
        if (string.IsNullOrWhiteSpace(file)) throw new IOException($"{what}: the path is empty");
        if (NameProblem(file) is { } bad) throw new IOException($"{what} '{Shorten(file)}': {bad}");
        if (Directory.Exists(file)) throw new IOException($"{what} '{Shorten(file)}': is a folder; give a file name");
        if (IsLinkLoop(file)) throw new IOException($"{what} '{Shorten(file)}': is a symbolic link loop");
        EnsureWritableFolder(Path.GetDirectoryName(Path.GetFullPath(file))!, $"{what} '{Shorten(file)}': its folder");
    }

    /// <summary>Whether <paramref name="path"/> is a symbolic link whose chain never ends in a file or
    /// folder.</summary>
    public static bool IsLinkLoop(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (info.LinkTarget is null) return false;
            _ = info.ResolveLinkTarget(returnFinalTarget: true);
            return false;
        }
        catch (IOException) { return true; }
        catch (Exception e) when (e is UnauthorizedAccessException or ArgumentException) { return false; }
    }

    /// <summary>The path, cut to its first and last 60 characters when longer than 160 (a 50 MB name must not fill the
    /// terminal).</summary>
    public static string Shorten(string path) =>
        path.Length <= 160 ? path : $"{path[..60]}…({path.Length:N0} characters)…{path[^60..]}";

    private static string? NameProblem(string path)
    {
        if (path.Contains('\0')) return "contains a NUL character";
        if (Encoding.UTF8.GetByteCount(path) > MaxPathBytes) return $"is longer than the {MaxPathBytes:N0} bytes a path may have";
        foreach (var name in path.Split(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar))
            if (Encoding.UTF8.GetByteCount(name) > MaxNameBytes)
                return $"has a file or folder name longer than the {MaxNameBytes} bytes a name may have";
        return null;
    }
}
