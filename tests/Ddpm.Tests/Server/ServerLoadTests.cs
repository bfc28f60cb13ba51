using System.Diagnostics;
using System.Net;
using Ddpm.Server;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Ddpm.Tests.Server;

/// <summary>The load test runs alone (it measures the process's resident memory), after the parallel tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ServerLoadCollection
{
    public const string Name = "ddpm serve under load";
}

/// <summary>
/// A bounded load test on loopback: 20 clients for 30 s against four checkpoints (two models cached, so models are
/// also evicted and reloaded), a quarter of the generations abandoned after their first frame. Every answer must be a
/// grid, a 429 or a cancellation the client made; the process's RSS must not keep growing; the server must still work.
/// </summary>
[Collection(ServerLoadCollection.Name)]
[Trait(TestCategory.Name, TestCategory.Slow)] // a trait on the collection definition would not reach the test
public sealed class ServerLoadTests(ITestOutputHelper output)
{
    private const int Clients = 20;
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Twenty_clients_for_thirty_seconds_get_grids_429s_or_their_own_cancellations_and_memory_stays_flat()
    {
        var runs = ServerRuns.Shared;
        var (app, address) = ServerRuns.OnLoopback(new ServerOptions
        {
            RunsDirectory = runs.Runs, FrameInterval = TimeSpan.FromMilliseconds(20), Limits = new GenerationLimits { CachedModels = 2 },
        });
        await using var server = app;
        var catalog = app.Services.GetRequiredService<RunsCatalog>();
        var checkpoints = catalog.Scan().SelectMany(r => r.Checkpoints).ToList();
        Assert.Equal(4, checkpoints.Count);
        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 100 }) { BaseAddress = address, Timeout = TimeSpan.FromSeconds(120) };

        var rss = new List<(double Seconds, long Bytes)>();
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource(Duration);
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                rss.Add((clock.Elapsed.TotalSeconds, ResidentBytes()));
                try { await Task.Delay(250, stop.Token); } catch (OperationCanceledException) { }
            }
        });
        var tallies = await Task.WhenAll(Enumerable.Range(0, Clients).Select(i => Task.Run(() => Client(i, http, checkpoints, stop.Token))));
        await sampler;
        var total = tallies.Aggregate(new Tally(), (a, b) => a.Add(b));
        output.WriteLine($"{Clients} clients, {clock.Elapsed.TotalSeconds:F1} s: {total.Grids} grids, {total.Busy} × 429, {total.Cancelled} cancelled by the client, " +
            $"{total.Failures.Count} failures; {total.Grids + total.Busy + total.Cancelled} answers");
        Assert.True(total.Failures.Count == 0, string.Join("\n", total.Failures.Take(10)));
        Assert.True(total.Grids > 0 && total.Busy > 0 && total.Cancelled > 0, "every kind of answer should occur under this load");

        // Memory: after a 10 s warm-up, the last 5 s must not sit much above the 10–15 s window.
        double Mean(double from, double to) => rss.Where(r => r.Seconds >= from && r.Seconds < to).Average(r => r.Bytes) / 1048576.0;
        double early = Mean(10, 15), late = Mean(Duration.TotalSeconds - 5, Duration.TotalSeconds + 1);
        output.WriteLine($"RSS MB: start {rss[0].Bytes / 1048576.0:F0}, max {rss.Max(r => r.Bytes) / 1048576.0:F0}, mean 10–15 s {early:F0}, mean last 5 s {late:F0}");
        Assert.True(late - early < 48, $"RSS grew from {early:F0} MB (10–15 s) to {late:F0} MB (last 5 s)");

        // Still serving, and no slot left held: each checkpoint generates again. A generation its client abandoned just
        // before the clients stopped may still be finishing its current step (or loading its model) on a slow machine,
        // so a 429 is retried as its Retry-After says, for at most 60 s; a slot that was never released stays 429 and
        // fails.
        foreach (var c in checkpoints)
        {
            var settle = Stopwatch.StartNew();
            while (true)
            {
                using var response = await ServerClient.Start(http, new { checkpoint = c.Id, steps = 2, count = 1 });
                if (response.StatusCode == HttpStatusCode.TooManyRequests && settle.Elapsed < TimeSpan.FromSeconds(60))
                {
                    output.WriteLine($"{c.Id}: still busy {settle.Elapsed.TotalSeconds:F1} s after the clients stopped; retrying");
                    await Task.Delay(response.Headers.RetryAfter?.Delta is { } wait && wait < TimeSpan.FromSeconds(5) ? wait : TimeSpan.FromSeconds(1));
                    continue;
                }
                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal("done", (await ServerClient.ReadAll(response))[^1].Name);
                break;
            }
        }
    }

    private sealed class Tally
    {
        public int Grids, Busy, Cancelled;
        public List<string> Failures { get; } = [];

        public Tally Add(Tally other)
        {
            (Grids, Busy, Cancelled) = (Grids + other.Grids, Busy + other.Busy, Cancelled + other.Cancelled);
            Failures.AddRange(other.Failures);
            return this;
        }
    }

    private static async Task<Tally> Client(int index, HttpClient http, IReadOnlyList<CheckpointInfo> checkpoints, CancellationToken stop)
    {
        var random = new Random(index);
        var tally = new Tally();
        while (!stop.IsCancellationRequested)
        {
            var c = checkpoints[random.Next(checkpoints.Count)];
            int count = random.Next(1, 9), rows = random.Next(1, count + 1), steps = random.Next(5, 61);
            bool guided = c.Model.NumClasses > 0 && random.Next(2) == 0, leave = random.Next(4) == 0;
            object body = guided
                ? new { checkpoint = c.Id, sampler = random.Next(2) == 0 ? "ddpm" : "ddim", steps, count, rows, seed = random.Next(), @class = random.Next(2), guidance = 2.0 }
                : new { checkpoint = c.Id, sampler = random.Next(2) == 0 ? "ddpm" : "ddim", steps, count, rows, seed = random.Next() };
            using var mine = new CancellationTokenSource();
            try
            {
                using var response = await ServerClient.Start(http, body, mine.Token);
                if (response.StatusCode == HttpStatusCode.TooManyRequests)
                {
                    if (response.Headers.RetryAfter?.Delta is not { TotalSeconds: >= 1 }) tally.Failures.Add($"429 without a valid Retry-After: {response.Headers.RetryAfter}");
                    tally.Busy++;
                    await Task.Delay(random.Next(20, 100), CancellationToken.None);
                    continue;
                }
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    tally.Failures.Add($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(CancellationToken.None)}");
                    continue;
                }
                string? grid = null;
                await foreach (var e in ServerClient.Events(response, mine.Token))
                {
                    if (e.Name == "frame" && leave)
                    {
                        mine.Cancel(); // the page is closed after its first frame
                        break;
                    }
                    if (e.Name == "done") grid = e.Data.GetProperty("png").GetString();
                    if (e.Name == "error") tally.Failures.Add($"error event: {e.Data}");
                }
                if (mine.IsCancellationRequested) { tally.Cancelled++; continue; }
                if (grid is null) { tally.Failures.Add("the stream ended without a grid"); continue; }
                var (width, height, _) = ServerClient.Decode(ServerClient.PngOf(grid));
                int perRow = Math.Min(rows, count), lines = (count + perRow - 1) / perRow;
                if ((width, height) != (ServerClient.GridSide(perRow, ServerRuns.ImageSize), ServerClient.GridSide(lines, ServerRuns.ImageSize)))
                    tally.Failures.Add($"grid {width}×{height} for {count} images, {rows} per row");
                else tally.Grids++;
            }
            catch (OperationCanceledException) when (mine.IsCancellationRequested)
            {
                tally.Cancelled++;
            }
            catch (Exception e)
            {
                tally.Failures.Add($"{e.GetType().Name}: {e.Message}");
            }
        }
        return tally;
    }

    /// <summary>The process's resident set (VmRSS), in bytes.</summary>
    private static long ResidentBytes()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        return Environment.WorkingSet;
    }
}
