using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Ddpm.Tests.Server;

/// <summary>
/// Every log entry the server writes (level, category, message, exception), for tests of what it logs.
/// </summary>
internal sealed class LogCapture : ILoggerProvider
{
    public sealed record Entry(LogLevel Level, string Category, string Message, Exception? Exception);

    public ConcurrentQueue<Entry> Entries { get; } = new();

    /// <summary>
    /// Entries at <see cref="LogLevel.Error"/> or above, or carrying an exception (a stack trace in the log).
    /// </summary>
    public IReadOnlyList<Entry> Failures => Entries.Where(e => e.Level >= LogLevel.Error || e.Exception is not null).ToList();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(LogCapture capture, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            capture.Entries.Enqueue(new Entry(logLevel, category, formatter(state, exception), exception));
    }
}
