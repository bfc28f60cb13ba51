using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Ddpm.IO;

/// <summary>
/// Reads of files that must be regular files (checkpoints, logs, configs, images) that never block: opening a FIFO for
/// reading waits for a writer forever, and a device may never answer. On Linux the kind is read with statx(2) before
/// any open, and <see cref="OpenRead"/> opens with O_NONBLOCK and checks the open descriptor again, so a file swapped
/// for a FIFO between the check and the open is refused too. Elsewhere both fall back to .NET's own checks.
/// </summary>
public static partial class RegularFile
{
    private const int AtFdCwd = -100, AtEmptyPath = 0x1000, StatxType = 0x1;
    private const int ONonBlock = 0x800, OCloExec = 0x80000, FGetFl = 3, FSetFl = 4; // the same on x86-64 and arm64
    private const int SIfMt = 0xF000, SIfReg = 0x8000, SIfDir = 0x4000, SIfIfo = 0x1000, SIfSock = 0xC000, SIfChr = 0x2000, SIfBlk = 0x6000;
    private const int ENoEnt = 2, EAccess = 13, EPerm = 1;

    /// <summary>
    /// What <paramref name="path"/> is when it exists but is not a regular file or a folder ("a FIFO", "a socket", "a
    /// character device", "a block device"), following symbolic links; null for a regular file, a folder, a path that
    /// does not exist, or where the kind cannot be read.
    /// </summary>
    public static string? SpecialKind(string path)
    {
        if (!OperatingSystem.IsLinux()) return null;
        var mode = Mode(AtFdCwd, path, 0);
        return mode is { } m && (m & SIfMt) is not (SIfReg or SIfDir) ? Describe(m) : null;
    }

    /// <summary>
    /// Whether <paramref name="path"/> exists and is a regular file (symbolic links followed), without opening it.
    /// </summary>
    public static bool Is(string path) => File.Exists(path) && SpecialKind(path) is null;

    /// <summary>
    /// Opens <paramref name="path"/> for reading (shared with writers and deleters) if it is a regular file. A FIFO,
    /// socket or device is an <see cref="IOException"/> naming what it is, never opened in a way that could block.
    /// </summary>
    /// <exception cref="FileNotFoundException">It does not exist.</exception>
    /// <exception cref="UnauthorizedAccessException">It cannot be read.</exception>
    public static FileStream OpenRead(string path, int bufferSize = 4096)
    {
        if (!OperatingSystem.IsLinux())
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize);
        if (SpecialKind(path) is { } kind) throw NotRegular(path, kind);
        int fd = Open(path, ONonBlock | OCloExec);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            var message = $"'{path}': {Marshal.GetPInvokeErrorMessage(errno)}";
            throw errno switch
            {
                ENoEnt => new FileNotFoundException(message, path),
                EAccess or EPerm => new UnauthorizedAccessException(message),
                _ => new IOException(message),
            };
        }
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            // The descriptor itself: the path may have been swapped between the check above and the open.
            if (Mode(fd, "", AtEmptyPath) is { } mode && (mode & SIfMt) != SIfReg)
                throw (mode & SIfMt) == SIfDir ? new UnauthorizedAccessException($"'{path}' is a folder, not a file") : NotRegular(path, Describe(mode));
            int flags = Fcntl(fd, FGetFl, 0);
            if (flags >= 0) Fcntl(fd, FSetFl, flags & ~ONonBlock); // reads of a regular file then behave as .NET expects
            return new FileStream(handle, FileAccess.Read, bufferSize);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static IOException NotRegular(string path, string kind) =>
        new($"'{path}' is {kind}, not a regular file; refusing to read it (a read could wait forever)");

    private static string Describe(int mode) => (mode & SIfMt) switch
    {
        SIfIfo => "a FIFO (named pipe)",
        SIfSock => "a socket",
        SIfChr => "a character device",
        SIfBlk => "a block device",
        SIfDir => "a folder",
        _ => "not a regular file",
    };

    /// <summary>statx(2)'s stx_mode, or null when the call fails (no such file; a kernel without statx).</summary>
    private static unsafe int? Mode(int dirFd, string path, int flags)
    {
        // struct statx is 256 bytes on every architecture; stx_mode is the u16 at offset 28.
        byte* buffer = stackalloc byte[256];
        try
        {
            if (Statx(dirFd, path, flags, StatxType, buffer) != 0) return null;
        }
        catch (EntryPointNotFoundException) { return null; } // glibc before 2.28
        return *(ushort*)(buffer + 28);
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int dirFd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);
}
