using System.Runtime.InteropServices;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// Named pipes for the tests of readers that must never open one (an open for reading waits for a writer).
/// </summary>
internal static class Fifo
{
    /// <summary>Creates a FIFO at <paramref name="path"/> (replacing a file there) and returns the path.</summary>
    public static string Make(string path)
    {
        File.Delete(path);
        if (MakeFifo(path, 0x1A4) != 0) throw new IOException($"mkfifo {path}: errno {Marshal.GetLastPInvokeError()}");
        return path;
    }

    /// <summary>
    /// Lets a reader blocked in opening <paramref name="path"/> go on (a writer opens and closes it): cleanup after a
    /// failure.
    /// </summary>
    public static void Release(string path)
    {
        int fd = Open(path, 0x1 | 0x800); // O_WRONLY | O_NONBLOCK: succeeds only while a reader waits
        if (fd >= 0) Close(fd);
    }

    [DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int MakeFifo([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);

    [DllImport("libc", EntryPoint = "open", SetLastError = true)]
    private static extern int Open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", EntryPoint = "close")]
    private static extern int Close(int fd);
}
