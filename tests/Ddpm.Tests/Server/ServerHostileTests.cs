using System.IO.Compression;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Ddpm.Server;
using Ddpm.Tests.Reliability;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Logging;

namespace Ddpm.Tests.Server;

/// <summary>
/// Issue 25's faults against <c>ddpm serve</c>: FIFOs in the runs folder, errors a client must see without server
/// paths, and conditions a client causes logged without stack traces. The runs hold untrained step-0 checkpoints.
/// </summary>
public sealed class ServerHostileTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly string _root = TestPaths.TempDir("serve-hostile");
    private readonly List<string> _fifos = [];
    private readonly LogCapture _logs = new();

    public void Dispose()
    {
        foreach (var f in _fifos) Fifo.Release(f); // frees a reader that blocked on one (a failure of these tests)
        Directory.Delete(_root, recursive: true);
    }

    private string Run(string name, bool checkpoint = true)
    {
        var dir = Path.Combine(_root, name);
        Directory.CreateDirectory(dir);
        if (checkpoint) TinyCheckpoint.Write(Path.Combine(dir, "checkpoint.ckpt"), emaFill: null);
        return dir;
    }

    private string MakeFifo(string path)
    {
        _fifos.Add(path);
        return Fifo.Make(path);
    }

    private WebApplication InMemory() => Started(DdpmServer.Build(new ServerOptions { RunsDirectory = _root, FrameInterval = TimeSpan.Zero }, b =>
    {
        b.WebHost.UseTestServer();
        b.Logging.ClearProviders();
        b.Logging.AddProvider(_logs);
    }));

    private static WebApplication Started(WebApplication app)
    {
        app.StartAsync().GetAwaiter().GetResult();
        return app;
    }

    /// <summary>
    /// A GET that fails the test when it does not answer in time (the in-memory server may block the caller's thread).
    /// </summary>
    private static async Task<HttpResponseMessage> Get(HttpClient client, string url)
    {
        var get = Task.Run(() => client.GetAsync(url));
        if (await Task.WhenAny(get, Task.Delay(Patience)) != get)
            throw new Xunit.Sdk.XunitException($"GET {url} did not answer within {Patience.TotalSeconds:F0} s");
        return await get;
    }

    [Fact]
    public async Task Fifos_in_the_runs_folder_are_skipped_and_every_request_answers()
    {
        var x = Run("x", checkpoint: false);
        File.WriteAllText(Path.Combine(x, "config.yaml"), TinyCheckpoint.Yaml);
        MakeFifo(Path.Combine(x, "checkpoint.ckpt"));
        MakeFifo(Path.Combine(x, "other.ckpt"));
        var y = Run("y");
        foreach (var name in new[] { "config.yaml", "loss.csv", "train_log.csv", "preview.png", "eval.json" }) MakeFifo(Path.Combine(y, name));
        var z = Run("z", checkpoint: false); // only FIFOs: not a run
        MakeFifo(Path.Combine(z, "config.yaml"));
        MakeFifo(Path.Combine(z, "checkpoint.ckpt"));

        await using var app = InMemory();
        using var client = app.GetTestClient();
        using var runs = await Get(client, "api/runs");
        Assert.Equal(HttpStatusCode.OK, runs.StatusCode);
        var list = System.Text.Json.JsonDocument.Parse(await runs.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(["x", "y"], list.EnumerateArray().Select(r => r.GetProperty("name").GetString()));
        Assert.Empty(list[0].GetProperty("checkpoints").EnumerateArray());
        Assert.Equal("checkpoint.ckpt", Assert.Single(list[1].GetProperty("checkpoints").EnumerateArray()).GetProperty("name").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, list[1].GetProperty("latestSample").ValueKind);

        var id = RunsCatalog.IdOf("y");
        using var details = await Get(client, $"api/runs/{id}");
        Assert.Equal(HttpStatusCode.OK, details.StatusCode);
        var run = System.Text.Json.JsonDocument.Parse(await details.Content.ReadAsStringAsync()).RootElement;
        Assert.Contains("num_timesteps: 20", run.GetProperty("config").GetString()); // the checkpoint's, not the FIFO's
        Assert.False(run.GetProperty("hasLoss").GetBoolean());
        using var loss = await Get(client, $"api/runs/{id}/loss");
        Assert.Equal(HttpStatusCode.OK, loss.StatusCode);
        foreach (var name in new[] { "y/preview.png", "y/loss.csv", "y/config.yaml", "x/checkpoint.ckpt" })
        {
            using var file = await Get(client, $"files/{name}");
            Assert.Equal(HttpStatusCode.NotFound, file.StatusCode);
        }
    }

    [Fact]
    public async Task Every_sample_the_runs_list_advertises_is_served_even_for_a_folder_name_with_a_line_break()
    {
        foreach (var name in new[] { "plain", "line\nbreak", "tab\tname" })
        {
            var run = Run(name);
            File.Copy(TestPng(), Path.Combine(run, "preview.png"));
        }
        await using var app = InMemory();
        using var client = app.GetTestClient();
        using var runs = await Get(client, "api/runs");
        var list = System.Text.Json.JsonDocument.Parse(await runs.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(3, list.GetArrayLength());
        Assert.Equal("plain/preview.png", list.EnumerateArray().Single(r => r.GetProperty("name").GetString() == "plain").GetProperty("latestSample").GetString());
        foreach (var run in list.EnumerateArray())
            if (run.GetProperty("latestSample").GetString() is { } sample)
            {
                using var file = await Get(client, "files/" + string.Join('/', sample.Split('/').Select(Uri.EscapeDataString)));
                Assert.True(file.StatusCode == HttpStatusCode.OK, $"{run.GetProperty("name")}: advertised {sample}, /files says {file.StatusCode}");
            }
    }

    private string TestPng()
    {
        var path = Path.Combine(_root, ".test.png");
        if (!File.Exists(path)) Data.TestImages.Solid(path, 4, 4, SkiaSharp.SKColors.White);
        return path;
    }

    [Fact]
    public async Task A_corrupt_checkpoint_fails_its_generation_without_a_path_to_the_client_or_a_stack_trace_in_the_log()
    {
        var run = Run("corrupt");
        var path = Path.Combine(run, "checkpoint.ckpt");
        CorruptWeights(path); // the manifest reads (so it is listed); the weights fail their checksum when loaded
        await using var app = InMemory();
        using var client = app.GetTestClient();
        var id = RunsCatalog.IdOf("corrupt/checkpoint.ckpt");
        // The model is loaded while the request is planned, before the stream starts: a 500 with the problem in one
        // line.
        using var response = await ServerClient.Start(client, new { checkpoint = id, sampler = "ddim", steps = 2, count = 1 });
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        using var problem = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var message = problem.RootElement.GetProperty("detail").GetString()!;
        Assert.Contains("fails its checksum", message);
        Assert.Contains("corrupt/checkpoint.ckpt", message);
        Assert.DoesNotContain(_root, message);
        Assert.DoesNotContain(Path.GetTempPath(), message);
        Assert.Empty(_logs.Failures.Select(e => $"{e.Level} {e.Category}: {e.Message} {e.Exception?.GetType().Name}"));
        Assert.Contains(_logs.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("fails its checksum"));
    }

    [Fact]
    public void Messages_for_clients_name_checkpoints_by_run_and_leave_out_every_other_absolute_path()
    {
        var folder = new RunsFolder(_root);
        var checkpoint = new CheckpointInfo("0123456789abcdef", "checkpoint.ckpt", "a/b", 1, 1, DateTime.UtcNow, null!)
        {
            FullPath = Path.Combine(folder.Root, "a", "b", "checkpoint.ckpt"),
        };
        var text = DdpmServer.ForClient($"checkpoint '{checkpoint.FullPath}': entry x is corrupt; see {folder.Root}/a/b/loss.csv " +
            "and /usr/lib/libtorch.so (count × steps 1/2)\nException raised from foo at /src/x.cpp:3", folder, checkpoint);
        Assert.Equal("checkpoint 'a/b/checkpoint.ckpt': entry x is corrupt; see a/b/loss.csv and <path> (count × steps 1/2)", text);
    }

    [Fact]
    [Trait(TestCategory.Name, TestCategory.Slow)]
    public async Task A_body_sent_too_slowly_is_answered_and_logged_without_a_stack_trace()
    {
        Run("plain");
        var app = DdpmServer.Build(new ServerOptions { RunsDirectory = _root, Port = 0 }, b =>
        {
            b.Logging.ClearProviders();
            b.Logging.AddProvider(_logs);
            b.WebHost.ConfigureKestrel(k => k.Limits.MinRequestBodyDataRate = new MinDataRate(100, TimeSpan.FromSeconds(2)));
        });
        await app.StartAsync();
        await using var _ = app;
        var address = new Uri(app.Urls.Single());
        using var socket = new TcpClient();
        await socket.ConnectAsync(IPAddress.Loopback, address.Port);
        var stream = socket.GetStream();
        // Headers promising 4 KB, then one byte: Kestrel ends the read once the body falls below 100 bytes/s.
        await stream.WriteAsync(Encoding.ASCII.GetBytes("POST /api/generate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n" +
            "Content-Length: 4096\r\n\r\n{"));
        var reply = new byte[4096];
        using var patience = new CancellationTokenSource(Patience);
        int read = await stream.ReadAsync(reply, patience.Token);
        Assert.StartsWith("HTTP/1.1 408", Encoding.ASCII.GetString(reply, 0, read));
        await app.StopAsync();
        Assert.Empty(_logs.Failures.Select(e => $"{e.Level} {e.Category}: {e.Message} {e.Exception?.GetType().Name}"));
    }

    [Fact]
    public void The_server_accepts_what_the_open_file_limit_leaves_room_for_and_refuses_to_start_below_a_floor()
    {
        // Half of what remains beyond the descriptors in use and the reserve (a connection: a socket and a file).
        Assert.Equal((1024 - 200 - GuardedServer.Reserve) / 2, GuardedServer.ConnectionBudget(1024, 200));
        Assert.Equal(50, GuardedServer.ConnectionBudget(1024, 200, requested: 50));
        Assert.Equal(int.MaxValue, GuardedServer.ConnectionBudget(null, 200));
        var e = Assert.Throws<IOException>(() => GuardedServer.ConnectionBudget(300, 208));
        Assert.Equal("the open-file limit is 300 (ulimit -n) and 208 are in use after start-up: ddpm serve needs at least 368 " +
            "to accept 16 connections; raise it, e.g. ulimit -n 4096", e.Message);
    }

    /// <summary>Flips a byte inside the stored model weights, leaving the archive and its manifest readable.</summary>
    private static void CorruptWeights(string checkpoint)
    {
        byte[] bytes;
        using (var zip = ZipFile.OpenRead(checkpoint))
        using (var s = zip.GetEntry("model.safetensors")!.Open())
        using (var m = new MemoryStream())
        {
            s.CopyTo(m);
            bytes = m.ToArray();
        }
        bytes[^1] ^= 0xFF;
        using var update = ZipFile.Open(checkpoint, ZipArchiveMode.Update);
        update.GetEntry("model.safetensors")!.Delete();
        using var w = update.CreateEntry("model.safetensors", CompressionLevel.NoCompression).Open();
        w.Write(bytes);
    }
}
