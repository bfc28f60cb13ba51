using System.Diagnostics;

namespace Ddpm.Cli.Commands;

/// <summary>
/// A one-line progress bar on stderr (redrawn in place on a terminal; a plain line every few seconds when redirected,
/// so CI logs stay readable).
/// </summary>
internal sealed class ProgressLine
{
    private readonly Stopwatch _sinceDraw = Stopwatch.StartNew();
    private Stopwatch _sinceFirst = new();
    private long _first = -1;
    private readonly bool _interactive = !Console.IsErrorRedirected;
    private bool _drawn;

    /// <summary>Draws the bar; without <paramref name="eta"/>, the time left at the rate since the first update.</summary>
    public void Update(long done, long total, string text, TimeSpan? eta = null, bool force = false)
    {
        if (_first < 0) (_first, _sinceFirst) = (done, Stopwatch.StartNew());
        if (eta is null && done > _first)
            eta = TimeSpan.FromSeconds(_sinceFirst.Elapsed.TotalSeconds / (done - _first) * (total - done));
        var interval = _interactive ? 100 : 5000;
        if (!force && _drawn && _sinceDraw.ElapsedMilliseconds < interval && done != total) return;
        _sinceDraw.Restart();
        _drawn = true;
        const int width = 24;
        int filled = total > 0 ? (int)(width * Math.Min(done, total) / total) : 0;
        var bar = new string('#', filled) + new string('.', width - filled);
        var etaText = eta is { } e ? $" ETA {Format(e)}" : "";
        var line = $"[{bar}] {done}/{total} {text}{etaText}";
        if (_interactive) Console.Error.Write("\r" + line.PadRight(Math.Min(Console.WindowWidth > 0 ? Console.WindowWidth - 1 : 100, 120)));
        else Console.Error.WriteLine(line);
    }

    public void Finish()
    {
        if (_interactive && _drawn) Console.Error.WriteLine();
        _drawn = false;
    }

    public static string Format(TimeSpan t) =>
        t.TotalHours >= 1 ? $"{(int)t.TotalHours}h{t.Minutes:00}m" : t.TotalMinutes >= 1 ? $"{(int)t.TotalMinutes}m{t.Seconds:00}s" : $"{t.TotalSeconds:0.0}s";
}

/// <summary>An <see cref="IProgress{T}"/> that reports on the calling thread, in order (unlike <see cref="Progress{T}"/>).</summary>
internal sealed class Reporter<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
