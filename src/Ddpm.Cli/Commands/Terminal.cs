using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Ddpm.Cli.Commands;

/// <summary>
/// A one-line progress bar on stderr (redrawn in place on a terminal; a plain line every few seconds when redirected,
/// so CI logs stay readable).
/// </summary>
internal sealed class ProgressLine
{
    private const int Width = 24;
    private readonly Stopwatch _sinceDraw = Stopwatch.StartNew();
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private Stopwatch _sinceFirst = new();
    private long _first = -1;
    private bool _drawn;
    private string? _phase;

    /// <summary>Draws the bar, a new one whenever <paramref name="phase"/> changes.</summary>
    public void Update(string phase, long done, long total, string text)
    {
        if (phase != _phase)
        {
            Finish();
            (_phase, _first) = (phase, -1);
        }
        Update(done, total, text);
    }

    /// <summary>Draws the bar; without <paramref name="eta"/>, the time left at the rate so far.</summary>
    public void Update(long done, long total, string text, TimeSpan? eta = null)
    {
        if (_first < 0) (_first, _sinceFirst) = (done, Stopwatch.StartNew());
        if (eta is null && done > _first) eta = TimeSpan.FromSeconds(_sinceFirst.Elapsed.TotalSeconds / (done - _first) * (total - done));
        if (_drawn && _sinceDraw.ElapsedMilliseconds < (_interactive ? 100 : 5000) && done != total) return;
        _drawn = true;
        _sinceDraw.Restart();
        int filled = total > 0 ? (int)(Width * Math.Min(done, total) / total) : 0;
        var line = $"[{new string('#', filled)}{new string('.', Width - filled)}] {done}/{total} {text}{(eta is { } e ? $" ETA {Format(e)}" : "")}";
        if (_interactive) Console.Error.Write("\r" + line.PadRight(Math.Min(Console.WindowWidth > 0 ? Console.WindowWidth - 1 : 100, 120)));
        else Console.Error.WriteLine(line);
    }

    public void Finish()
    {
        if (_interactive && _drawn) Console.Error.WriteLine();
        _drawn = false;
    }

    private static string Format(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s" : $"{t.TotalSeconds:0.0}s";
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the calling thread, in order (Progress posts).</summary>
internal sealed class Reporter<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}

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
    /// <summary>The first signal's exit code, else <paramref name="fallback"/> (another rank stopped).</summary>
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
