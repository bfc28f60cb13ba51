using System.Runtime.InteropServices;

namespace Ddpm.Cli.Commands;

/// <summary>
/// SIGINT (Ctrl+C) and SIGTERM as a request to stop: <see cref="Token"/> is cancelled, the work finishes its step and
/// saves, and <see cref="ExitCode"/> says which signal came (128 + its number, as shells report it). With
/// <paramref name="secondIntKills"/>, a second Ctrl+C ends the process at once.
/// </summary>
internal sealed class StopSignals : IDisposable
{
    public const int Sigint = 130, Sigterm = 143;
    private readonly CancellationTokenSource _cancel = new();
    private readonly PosixSignalRegistration _int, _term;
    private int _code;

    public StopSignals(bool secondIntKills = false)
    {
        _int = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => Stop(c, Sigint, secondIntKills));
        _term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => Stop(c, Sigterm, false));
    }

    public CancellationToken Token => _cancel.Token;
    /// <summary>The first signal's exit code, or <paramref name="fallback"/> when none came to this process (a stop from another rank).</summary>
    public int ExitCode(int fallback = Sigterm) => _code == 0 ? fallback : _code;
    /// <summary>"SIGINT", "SIGTERM", or null.</summary>
    public string? Name => _code switch { Sigint => "SIGINT", Sigterm => "SIGTERM", _ => null };

    private void Stop(PosixSignalContext context, int code, bool letSecondThrough)
    {
        context.Cancel = !(letSecondThrough && _cancel.IsCancellationRequested);
        Interlocked.CompareExchange(ref _code, code, 0);
        _cancel.Cancel();
    }

    public void Dispose()
    {
        _int.Dispose();
        _term.Dispose();
        _cancel.Dispose();
    }
}
