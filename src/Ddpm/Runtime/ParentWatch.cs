using System.Globalization;
using System.Runtime.InteropServices;

namespace Ddpm.Runtime;

/// <summary>
/// Makes a child process die with the process that started it, for test hosts and job runners that may crash without
/// cleaning up: when <c>DDPM_EXIT_WITH_PARENT</c> holds a process id, this process exits (code <see cref="ExitCode"/>)
/// as soon as that process is gone or its standard input reaches its end (the parent's end of the pipe closed). Polling
/// by hand because .NET has no parent-death notification (Linux's PR_SET_PDEATHSIG fires when the forking
/// <em>thread</em> exits, which for .NET's Process.Start is any thread-pool thread).
/// </summary>
public static class ParentWatch
{
    /// <summary>The environment variable naming the parent's process id.</summary>
    public const string Variable = "DDPM_EXIT_WITH_PARENT";
    /// <summary>128 + SIGHUP: the parent hung up.</summary>
    public const int ExitCode = 129;
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(250);
    private static int _started;

    /// <summary>Starts watching when <see cref="Variable"/> names a process id (anything else is ignored); returns
    /// whether it did.</summary>
    public static bool StartFromEnvironment()
    {
        var value = Environment.GetEnvironmentVariable(Variable);
        if (!int.TryParse(value?.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) || pid <= 0) return false;
        Start(pid);
        return true;
    }

    /// <summary>Exits this process once <paramref name="parentPid"/> is gone or standard input ends (POSIX systems;
    /// elsewhere a no-op).</summary>
    public static void Start(int parentPid)
    {
        if (OperatingSystem.IsWindows() || Interlocked.Exchange(ref _started, 1) == 1) return;
        new Thread(() =>
        {
            while (IsAlive(parentPid)) Thread.Sleep(Poll);
            Exit($"parent process {parentPid} is gone");
        }) { IsBackground = true, Name = "ddpm parent watch" }.Start();
        new Thread(() =>
        {
            try
            {
                using var stdin = Console.OpenStandardInput();
                var buffer = new byte[256];
                while (stdin.Read(buffer, 0, buffer.Length) > 0) { }
            }
            catch (IOException) { }
            Exit("standard input closed (the parent's end of the pipe)");
        }) { IsBackground = true, Name = "ddpm stdin watch" }.Start();
    }

    /// <summary>Whether <paramref name="pid"/> names a live process (a zombie counts as gone).</summary>
    public static bool IsAlive(int pid)
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                var state = stat[(stat.LastIndexOf(')') + 2)..].TrimStart();
                return state.Length > 0 && state[0] is not ('Z' or 'X');
            }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return true; }
        }
        return Kill(pid, 0) == 0 || Marshal.GetLastPInvokeError() == 1; // EPERM: exists, not ours
    }

    private static void Exit(string why)
    {
        try
        {
            Console.Error.WriteLine($"ddpm: {why}; exiting ({Variable})");
            Console.Error.Flush();
        }
        catch (IOException) { }
        // _exit, not Environment.Exit: .NET's shutdown while the main thread is inside libtorch can crash (SIGSEGV
        // seen), and nothing needs cleaning up: every file is written atomically (a stale run lock is taken over
        // later).
        ExitNow(ExitCode);
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [DllImport("libc", EntryPoint = "_exit")]
    private static extern void ExitNow(int status);
}
