using System.Globalization;
using System.Runtime.InteropServices;

namespace Ddpm.Runtime;

/// <summary>
/// The process's open-file limit (RLIMIT_NOFILE) and how much of it is in use. .NET raises the soft limit to the hard
/// one at start-up, so the hard limit (<c>ulimit -n</c>) is what a process gets. Every assembly and native library .NET
/// loads holds descriptors (a ddpm command about 90, the server about 180), and a load that fails for lack of one fails
/// for good (a type initializer's failure is cached): hosts check the limit first rather than die midway.
/// </summary>
public static partial class DescriptorLimit
{
    /// <summary>
    /// The soft limit, after raising it to the hard one where it was lower; null where it cannot be read.
    /// </summary>
    public static long? Current()
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return null;
        int resource = OperatingSystem.IsLinux() ? 7 : 8; // RLIMIT_NOFILE
        var limit = new long[2];                           // struct rlimit { rlim_t cur, max; }
        if (GetRLimit(resource, limit) != 0) return null;
        if (limit[0] >= 0 && limit[1] > limit[0] && !OperatingSystem.IsMacOS())
        {
            var raised = new[] { limit[1], limit[1] };
            if (SetRLimit(resource, raised) == 0) limit[0] = limit[1];
        }
        return limit[0] < 0 ? long.MaxValue : limit[0]; // RLIM_INFINITY reads as −1
    }

    /// <summary>Descriptors open in this process now (Linux: /proc/self/fd; elsewhere null).</summary>
    public static int? InUse()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try { return Directory.GetFiles("/proc/self/fd").Length - 1; } // less the one listing it
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>
    /// One line saying that the limit is below <paramref name="needed"/> and how to raise it, or null when it is not
    /// (or cannot be read). <paramref name="who"/> names the program (<c>ddpm</c>).
    /// </summary>
    public static string? Shortfall(long needed, string who)
    {
        if (Current() is not { } limit || limit >= needed) return null;
        return string.Create(CultureInfo.InvariantCulture,
            $"the open-file limit is {limit} (ulimit -n) and {who} needs at least {needed}: raise it, e.g. ulimit -n 4096");
    }

    /// <summary>
    /// For a host's first line: when the limit is below <paramref name="needed"/>, writes <c>error: </c> and
    /// <see cref="Shortfall"/> to stderr and returns true (the host exits). The line goes straight to descriptor 2:
    /// Console would first load another assembly, which may be what cannot be opened.
    /// </summary>
    public static bool Refuse(long needed, string who)
    {
        if (Shortfall(needed, who) is not { } shortfall) return false;
        using var stderr = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(2, ownsHandle: false), FileAccess.Write, 1);
        stderr.Write(System.Text.Encoding.UTF8.GetBytes($"error: {shortfall}\n"));
        return true;
    }

    [LibraryImport("libc", EntryPoint = "getrlimit")]
    private static partial int GetRLimit(int resource, [Out] long[] limit);

    [LibraryImport("libc", EntryPoint = "setrlimit")]
    private static partial int SetRLimit(int resource, [In] long[] limit);
}
