using System.Runtime.InteropServices;

namespace Ddpm.Server;

/// <summary>
/// The one folder the server reads from. Every path is resolved to its real location (symbolic links followed, as the
/// operating system's <c>realpath</c> does) and refused unless it lies inside the folder's own real location.
/// </summary>
public sealed class RunsFolder
{
    /// <summary>The real path of the folder (no trailing separator).</summary>
    public string Root { get; }

    public RunsFolder(string path)
    {
        var full = Path.GetFullPath(path);
        if (!Directory.Exists(full)) throw new DirectoryNotFoundException($"runs folder '{path}' does not exist");
        Root = RealPath(full) ?? throw new DirectoryNotFoundException($"runs folder '{path}' cannot be resolved");
    }

    /// <summary>
    /// The real path of an existing file or folder named by <paramref name="relative"/> ('/'-separated, relative to
    /// <see cref="Root"/>), or null when the name is malformed (empty segments, '.', '..', hidden names, backslashes,
    /// control characters), does not exist, or resolves outside the folder (e.g. through a symbolic link).
    /// </summary>
    public string? Resolve(string relative)
    {
        if (string.IsNullOrEmpty(relative) || relative.Length > 1024) return null;
        var segments = relative.Split('/');
        foreach (var s in segments)
            if (s.Length == 0 || s[0] == '.' || s.Contains('\\') || s.Any(char.IsControl)) return null;
        return Contain(Path.Combine([Root, .. segments]));
    }

    /// <summary>The real path of <paramref name="path"/> when it exists and lies inside the folder; otherwise
    /// null.</summary>
    public string? Contain(string path)
    {
        var real = RealPath(path);
        return real is not null && IsInside(real) ? real : null;
    }

    /// <summary>True for the folder itself and anything below it (by real path).</summary>
    public bool IsInside(string realPath) =>
        realPath == Root || realPath.StartsWith(Root + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>'/'-separated path of <paramref name="realPath"/> relative to the folder.</summary>
    public string Relative(string realPath) => Path.GetRelativePath(Root, realPath).Replace(Path.DirectorySeparatorChar, '/');

    /// <summary>The canonical absolute path with every symbolic link resolved, or null when it does not
    /// exist.</summary>
    internal static string? RealPath(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            // No realpath(3): resolve the final link only (the server is developed and tested on Linux).
            FileSystemInfo info = Directory.Exists(path) ? new DirectoryInfo(path) : new FileInfo(path);
            if (!info.Exists) return null;
            return Path.GetFullPath(info.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? info.FullName);
        }
        var resolved = realpath(path, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return null;
        try { return Marshal.PtrToStringUTF8(resolved); }
        finally { free(resolved); }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern IntPtr realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

    [DllImport("libc")]
    private static extern void free(IntPtr pointer);
}
