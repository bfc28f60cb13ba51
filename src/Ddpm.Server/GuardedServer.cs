using System.Globalization;
using System.Text;
using Ddpm.Runtime;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Ddpm.Server;

/// <summary>
/// Kestrel, started so that a flood of connections cannot starve the process of file descriptors. Before it listens, a
/// few requests go through the app in process (the page, the runs list, a 404, a refused generation), so the code and
/// files they need are loaded while descriptors are free (a load that fails for lack of one fails for good: .NET caches
/// a failed type initializer). Then the connections it accepts at once are capped by what the open-file limit leaves
/// (<see cref="ConnectionBudget"/>); a connection beyond the cap is closed as soon as it is accepted.
/// </summary>
internal sealed class GuardedServer(IServer kestrel, KestrelServerOptions options, int? maxConnections, ILogger logger) : IServer
{
    /// <summary>
    /// Descriptors kept free beyond those in use after the warm-up: models loading, files being read, logs.
    /// </summary>
    public const int Reserve = 128;
    /// <summary>The fewest connections worth serving; a limit that leaves fewer is an error at start.</summary>
    public const int MinimumConnections = 16;

    public IFeatureCollection Features => kestrel.Features;

    public async Task StartAsync<TContext>(IHttpApplication<TContext> application, CancellationToken cancellationToken) where TContext : notnull
    {
        foreach (var (method, path, body) in WarmUp) await Run(application, method, path, body);
        long? limit = DescriptorLimit.Current();
        int connections = ConnectionBudget(limit, DescriptorLimit.InUse() ?? 256, maxConnections);
        options.Limits.MaxConcurrentConnections = connections;
        options.Limits.MaxConcurrentUpgradedConnections = connections;
        logger.LogInformation("accepting at most {Connections} connections at once (open-file limit {Limit})", connections,
            limit is { } l ? l.ToString(CultureInfo.InvariantCulture) : "unknown");
        await kestrel.StartAsync(application, cancellationToken);
    }

    public Task StopAsync(CancellationToken cancellationToken) => kestrel.StopAsync(cancellationToken);

    public void Dispose() => kestrel.Dispose();

    /// <summary>
    /// Connections to accept at once: half of what <paramref name="limit"/> leaves beyond <paramref name="inUse"/> and
    /// <see cref="Reserve"/> (a connection may hold a socket and a file being sent), at most
    /// <paramref name="requested"/>.
    /// </summary>
    /// <exception cref="IOException">The limit leaves fewer than <see cref="MinimumConnections"/>.</exception>
    public static int ConnectionBudget(long? limit, int inUse, int? requested = null)
    {
        long budget = limit is { } l ? (l - inUse - Reserve) / 2 : int.MaxValue;
        if (budget < MinimumConnections)
            throw new IOException(string.Create(CultureInfo.InvariantCulture,
                $"the open-file limit is {limit} (ulimit -n) and {inUse} are in use after start-up: ddpm serve needs at least " +
                $"{inUse + Reserve + 2 * MinimumConnections} to accept {MinimumConnections} connections; raise it, e.g. ulimit -n 4096"));
        return (int)Math.Min(budget, requested ?? int.MaxValue);
    }

    private static readonly (string Method, string Path, string? Body)[] WarmUp =
    [
        ("GET", "/", null), ("GET", "/api/options", null), ("GET", "/api/runs", null), ("GET", "/api/runs/0000000000000000", null),
        ("GET", "/files/warm-up.png", null), ("POST", "/api/generate", "{}"),
    ];

    /// <summary>
    /// One request through the app without a connection (as ASP.NET Core's test server does); the answer is dropped.
    /// </summary>
    private static async Task Run<TContext>(IHttpApplication<TContext> application, string method, string path, string? body) where TContext : notnull
    {
        var bytes = Encoding.UTF8.GetBytes(body ?? "");
        var request = new HttpRequestFeature { Method = method, Path = path, Scheme = "http", Protocol = "HTTP/1.1", Body = new MemoryStream(bytes) };
        request.Headers.Host = "localhost";
        if (body is not null)
        {
            request.Headers.ContentType = "application/json";
            request.Headers.ContentLength = bytes.Length;
        }
        var features = new FeatureCollection();
        features.Set<IHttpRequestFeature>(request);
        features.Set<IHttpResponseFeature>(new HttpResponseFeature());
        features.Set<IHttpResponseBodyFeature>(new StreamResponseBodyFeature(Stream.Null));
        features.Set<IHttpRequestLifetimeFeature>(new HttpRequestLifetimeFeature());
        var context = application.CreateContext(features);
        Exception? error = null;
        try { await application.ProcessRequestAsync(context); }
        catch (Exception e) { error = e; } // the same request from a client would meet the same failure and be logged then
        application.DisposeContext(context, error);
    }
}
