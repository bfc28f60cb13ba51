using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Ddpm.Cli;
using Ddpm.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;

namespace Ddpm.Tests.Server;

/// <summary>The HTTP API of <c>ddpm serve</c>, in process (TestServer), on checkpoints trained by the CLI.</summary>
public sealed class ServerApiTests : IDisposable
{
    private static readonly GenerationLimits Limits = new() { MaxImages = 64, MaxImageSteps = 70_000 };
    private readonly ServerRuns _runs = ServerRuns.Shared;
    private readonly WebApplication _app;
    private readonly HttpClient _client;

    public ServerApiTests()
    {
        _app = ServerRuns.InMemory(new ServerOptions { RunsDirectory = _runs.Runs, Limits = Limits, FrameInterval = TimeSpan.Zero,
            FrameQueue = 10_000 }); // every frame kept, so that the stream can be checked step by step
        _client = _app.GetTestClient();
    }

    public void Dispose()
    {
        _client.Dispose();
        _app.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    private GenerationService Service => _app.Services.GetRequiredService<GenerationService>();

    private async Task<JsonElement> Checkpoint(string run, string name = "checkpoint.ckpt")
    {
        var runs = await ServerClient.Json(_client, "api/runs");
        return runs.EnumerateArray().Single(r => r.GetProperty("name").GetString() == run)
            .GetProperty("checkpoints").EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);
    }

    private async Task<string> CheckpointId(string run, string name = "checkpoint.ckpt") =>
        (await Checkpoint(run, name)).GetProperty("id").GetString()!;

    [Fact]
    public async Task Runs_lists_each_run_with_its_checkpoints_model_and_latest_grid()
    {
        var runs = await ServerClient.Json(_client, "api/runs");
        Assert.Equal(["cond", "plain"], runs.EnumerateArray().Select(r => r.GetProperty("name").GetString()!).ToArray());
        var cond = runs[0];
        var names = cond.GetProperty("checkpoints").EnumerateArray().Select(c => c.GetProperty("name").GetString()!).ToArray();
        Assert.Equal(["checkpoint.ckpt", $"checkpoint-{ServerRuns.TrainSteps}.ckpt"], names);
        var latest = cond.GetProperty("checkpoints")[0];
        Assert.Equal(ServerRuns.TrainSteps, latest.GetProperty("step").GetInt64());
        Assert.Matches("^[0-9a-f]{16}$", latest.GetProperty("id").GetString());
        Assert.DoesNotContain(_runs.Root, runs.GetRawText()); // ids and relative names only, never server paths
        var model = latest.GetProperty("model");
        Assert.Equal(ServerRuns.Timesteps, model.GetProperty("timesteps").GetInt32());
        Assert.Equal(ServerRuns.ImageSize, model.GetProperty("imageSize").GetInt32());
        Assert.Equal(2, model.GetProperty("numClasses").GetInt32());
        Assert.True(model.GetProperty("hasEma").GetBoolean());
        Assert.Equal("cond/preview.png", cond.GetProperty("latestSample").GetString());
        Assert.False((await Checkpoint("plain")).GetProperty("model").GetProperty("hasEma").GetBoolean());
    }

    [Fact]
    public async Task A_run_gives_its_config_epochs_tensorboard_flag_and_the_numbers_of_its_eval_json()
    {
        var evalDir = Path.Combine(_runs.Plain, "eval");
        Directory.CreateDirectory(evalDir);
        File.WriteAllText(Path.Combine(evalDir, "eval.json"), """{ "num": 500, "quality": { "frechet_distance": 214.7 } }""");
        var runs = await ServerClient.Json(_client, "api/runs");
        var id = runs.EnumerateArray().Single(r => r.GetProperty("name").GetString() == "plain").GetProperty("id").GetString();
        var run = await ServerClient.Json(_client, $"api/runs/{id}");
        Assert.Contains("num_timesteps: 1000", run.GetProperty("config").GetString());
        var epochs = run.GetProperty("epochs");
        Assert.Contains("images_per_s", epochs.GetProperty("columns").EnumerateArray().Select(c => c.GetString()));
        var row = Assert.Single(epochs.GetProperty("rows").EnumerateArray());
        Assert.Equal(ServerRuns.TrainSteps, row[1].GetDouble());
        Assert.True(row[4].GetDouble() > 0, "img/s of the epoch");
        Assert.True(run.GetProperty("tensorBoard").GetBoolean());
        Assert.Equal(214.7, run.GetProperty("evaluation").GetProperty("quality").GetProperty("frechet_distance").GetDouble());
        using var missing = await _client.GetAsync("api/runs/0123456789abcdef");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    [Fact]
    public async Task The_loss_log_is_read_from_an_offset_one_complete_line_at_a_time()
    {
        var root = TestPaths.TempDir("serve-loss");
        try
        {
            var run = Path.Combine(root, "live");
            Directory.CreateDirectory(run);
            var log = Path.Combine(run, "loss.csv");
            File.WriteAllText(log, "step,loss\n1,0.5\n2,0.25\n");
            await using var app = ServerRuns.InMemory(new ServerOptions { RunsDirectory = root });
            using var client = app.GetTestClient();
            var id = RunsCatalog.IdOf("live");

            var first = await ServerClient.Json(client, $"api/runs/{id}/loss?offset=0");
            Assert.Equal([1L, 2L], first.GetProperty("steps").EnumerateArray().Select(e => e.GetInt64()));
            Assert.Equal([0.5, 0.25], first.GetProperty("losses").EnumerateArray().Select(e => e.GetDouble()));
            long offset = first.GetProperty("offset").GetInt64();
            Assert.Equal(new FileInfo(log).Length, offset);

            File.AppendAllText(log, "3,0.1"); // a line being written: not complete yet
            var partial = await ServerClient.Json(client, $"api/runs/{id}/loss?offset={offset}");
            Assert.Empty(partial.GetProperty("steps").EnumerateArray());
            Assert.Equal(offset, partial.GetProperty("offset").GetInt64());

            File.AppendAllText(log, "25\n4,NaN\n");
            var next = await ServerClient.Json(client, $"api/runs/{id}/loss?offset={offset}");
            Assert.Equal([3L, 4L], next.GetProperty("steps").EnumerateArray().Select(e => e.GetInt64()));
            Assert.Equal(0.125, next.GetProperty("losses")[0].GetDouble());
            Assert.Equal(JsonValueKind.Null, next.GetProperty("losses")[1].ValueKind); // non-finite → null

            File.WriteAllText(log, "step,loss\n1,0.9\n"); // a new run replaced the file: the old offset lies beyond its end
            var restarted = await ServerClient.Json(client, $"api/runs/{id}/loss?offset={next.GetProperty("offset").GetInt64()}");
            Assert.Equal([1L], restarted.GetProperty("steps").EnumerateArray().Select(e => e.GetInt64()));
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Theory]
    [InlineData("ddpm", 10, null, 0.0)]
    [InlineData("ddim", 8, 1, 2.0)]
    public async Task Generate_streams_frames_then_the_grid_ddpm_sample_writes_for_the_same_seed(string sampler, int steps, int? label, double guidance)
    {
        var id = await CheckpointId("cond");
        using var response = await ServerClient.Start(_client, new { checkpoint = id, sampler, steps, count = 6, rows = 3, seed = 11, @class = label, guidance });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = await ServerClient.ReadAll(response);
        Assert.Equal("start", events[0].Name);
        Assert.Equal(steps, events[0].Data.GetProperty("steps").GetInt32());
        var frames = events.Where(e => e.Name == "frame").ToList();
        Assert.Equal(steps - 1, frames.Count); // no frame interval here: every step but the last (which is the grid)
        Assert.Equal(Enumerable.Range(1, steps - 1), frames.Select(f => f.Data.GetProperty("step").GetInt32()));
        int side = ServerClient.GridSide(3, ServerRuns.ImageSize);
        foreach (var f in new[] { frames[0], frames[^1] })
            foreach (var image in new[] { "xt", "x0" })
            {
                var (width, height, _) = ServerClient.Decode(ServerClient.PngOf(f.Data.GetProperty(image).GetString()!));
                Assert.Equal((side, ServerClient.GridSide(2, ServerRuns.ImageSize)), (width, height)); // 6 images, 3 per row
            }
        var done = Assert.Single(events, e => e.Name == "done");
        Assert.Equal("done", events[^1].Name);
        var page = ServerClient.Decode(ServerClient.PngOf(done.Data.GetProperty("png").GetString()!));

        var outDir = TestPaths.TempDir("serve-cli");
        try
        {
            var args = new List<string> { "sample", "--checkpoint", _runs.CondCheckpoint, "--num", "6", "--grid-rows", "3", "--seed", "11",
                "--sampler", sampler, "--steps", steps.ToString(), "--frames", "0", "--out", outDir, "--device", "cpu" };
            if (label is { } y) args.AddRange(["--class", y.ToString(), "--guidance", guidance.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            Assert.Equal(0, CliApp.Run(args.ToArray()));
            var cli = ServerClient.Decode(File.ReadAllBytes(Path.Combine(outDir, "samples.png")));
            Assert.Equal((cli.Width, cli.Height), (page.Width, page.Height));
            Assert.Equal(cli.Pixels, page.Pixels);
        }
        finally { Directory.Delete(outDir, recursive: true); }
    }

    public static TheoryData<string, string> BadBodies() => new()
    {
        { "{", "not a valid request" },
        { "[]", "not a valid request" },
        { """{"checkpoint": "ID", "size": 3}""", "size" },
        { "{}", "checkpoint" },
        { """{"checkpoint": "0123456789abcdef"}""", "checkpoint" },
        { """{"checkpoint": "../cond/checkpoint.ckpt"}""", "checkpoint" },
        { """{"checkpoint": "ID", "steps": 0}""", "steps" },
        { """{"checkpoint": "ID", "steps": 1001}""", "steps" },
        { """{"checkpoint": "ID", "steps": "ten"}""", "not a valid request" },
        { """{"checkpoint": "ID", "count": 0}""", "count" },
        { """{"checkpoint": "ID", "count": 65}""", "count" },
        { """{"checkpoint": "ID", "count": 4, "rows": 5}""", "rows" },
        { """{"checkpoint": "ID", "rows": 0}""", "rows" },
        { """{"checkpoint": "ID", "sampler": "euler"}""", "sampler" },
        { """{"checkpoint": "ID", "sampler": "ddim2"}""", "sampler" },
        { """{"checkpoint": "ID", "eta": 0.5}""", "eta" },
        { """{"checkpoint": "ID", "sampler": "ddim", "eta": 2}""", "eta" },
        { """{"checkpoint": "ID", "sigma": "large"}""", "sigma" },
        { """{"checkpoint": "ID", "spacing": "log"}""", "spacing" },
        { """{"checkpoint": "ID", "class": 2}""", "class" },
        { """{"checkpoint": "ID", "class": -1}""", "class" },
        { """{"checkpoint": "ID", "class": 0, "guidance": -1}""", "guidance" },
        { """{"checkpoint": "ID", "class": 0, "guidance": 1e9}""", "guidance" },
        { """{"checkpoint": "ID", "guidance": 1}""", "guidance" },
        { """{"checkpoint": "ID", "count": 64, "steps": 1000, "class": 0, "guidance": 1}""", "exceeds" },
        { """{"checkpoint": "PLAIN", "class": 0}""", "unconditional" },
        { """{"checkpoint": "PLAIN", "ema": true}""", "ema" },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task A_bad_request_gets_400_with_a_problem_naming_the_field(string body, string expected)
    {
        body = body.Replace("\"ID\"", $"\"{await CheckpointId("cond")}\"").Replace("\"PLAIN\"", $"\"{await CheckpointId("plain")}\"");
        using var response = await _client.PostAsync("api/generate", new StringContent(body, Encoding.UTF8, "application/json"));
        await AssertProblem(response, HttpStatusCode.BadRequest, expected);
    }

    [Fact]
    public async Task A_body_that_is_not_json_or_too_large_gets_400()
    {
        var id = await CheckpointId("cond");
        using var text = await _client.PostAsync("api/generate", new StringContent($$"""{"checkpoint": "{{id}}"}""", Encoding.UTF8, "text/plain"));
        await AssertProblem(text, HttpStatusCode.BadRequest, "JSON");
        var huge = $$"""{"checkpoint": "{{id}}", "sampler": "{{new string('x', ServeRequestParser.MaxBodyBytes)}}"}""";
        using var large = await _client.PostAsync("api/generate", new StringContent(huge, Encoding.UTF8, "application/json"));
        await AssertProblem(large, HttpStatusCode.BadRequest, "larger than");
    }

    private static async Task AssertProblem(HttpResponseMessage response, HttpStatusCode status, string expected)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var detail = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString();
        Assert.Contains(expected, detail, StringComparison.OrdinalIgnoreCase);
    }

    private static readonly string[] EscapePaths =
    [
        "/files/../outside/secret.png",
        "/files/cond/../../outside/secret.png",
        "/files/%2e%2e/outside/secret.png",
        "/files/cond/..%2f..%2foutside/secret.png",
        "/files/%252e%252e/outside/secret.png",
        "/files/cond\\..\\..\\outside\\secret.png",
        "/files//etc/passwd",
        "/files/escape/secret.png",
        "/files/escape/secret.txt",
        "/files/cond/leak.png",
        "/files/cond/.hidden.txt",
        "/files/cond/checkpoint.ckpt",
        "/files/cond/nothing.png",
        "/files/cond",
    ];

    public static TheoryData<string> Escapes() => new(EscapePaths);

    [Theory]
    [MemberData(nameof(Escapes))]
    public async Task A_path_that_leaves_the_runs_folder_or_is_not_a_run_file_is_404(string path)
    {
        // The request path exactly as written (no client-side normalisation), straight into the app.
        var context = await _app.GetTestServer().SendAsync(c =>
        {
            c.Request.Method = "GET";
            c.Request.Path = new PathString(path);
        });
        Assert.Equal(StatusCodes.Status404NotFound, context.Response.StatusCode);
    }

    [Fact]
    public async Task Files_inside_the_runs_folder_are_served_links_included()
    {
        using var preview = await _client.GetAsync("files/cond/preview.png");
        Assert.Equal(HttpStatusCode.OK, preview.StatusCode);
        Assert.Equal("image/png", preview.Content.Headers.ContentType?.MediaType);
        var bytes = await preview.Content.ReadAsByteArrayAsync();
        Assert.Equal(File.ReadAllBytes(Path.Combine(_runs.Cond, "preview.png")), bytes);
        using var alias = await _client.GetAsync("files/cond/alias.png"); // a link that stays inside
        Assert.Equal(bytes, await alias.Content.ReadAsByteArrayAsync());
        using var config = await _client.GetAsync("files/cond/config.yaml");
        Assert.Contains("num_classes: 2", await config.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Over_real_http_traversal_attempts_are_404_too()
    {
        var (app, address) = ServerRuns.OnLoopback(new ServerOptions { RunsDirectory = _runs.Runs });
        await using var server = app;
        foreach (var path in EscapePaths)
        {
            var status = await RawGet(address, path);
            Assert.True(status == 404, $"GET {path} answered {status}");
        }
        Assert.Equal(200, await RawGet(address, "/files/cond/preview.png"));
    }

    /// <summary>A GET with the request target sent byte for byte (HttpClient would normalise it); returns the status
    /// code.</summary>
    private static async Task<int> RawGet(Uri address, string target)
    {
        using var socket = new TcpClient();
        await socket.ConnectAsync(address.Host, address.Port);
        var stream = socket.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
        using var reader = new StreamReader(stream, Encoding.ASCII);
        var status = await reader.ReadLineAsync() ?? "";
        return int.Parse(status.Split(' ')[1]);
    }

    [Fact]
    public async Task Requests_addressed_to_another_host_name_are_refused_on_loopback()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "api/runs");
        request.Headers.Host = "attacker.example";
        using var response = await _client.SendAsync(request);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
    }

    [Fact]
    public async Task A_busy_checkpoint_answers_429_with_Retry_After_while_others_still_generate()
    {
        var cond = await CheckpointId("cond");
        var catalog = _app.Services.GetRequiredService<RunsCatalog>();
        using (var lease = Service.TryBegin(catalog.FindCheckpoint(cond)!, out _))
        {
            Assert.NotNull(lease);
            using var busy = await ServerClient.Start(_client, new { checkpoint = cond, steps = 5, count = 2 });
            Assert.Equal(HttpStatusCode.TooManyRequests, busy.StatusCode);
            Assert.True(busy.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1), $"Retry-After: {busy.Headers.RetryAfter}");
            using var other = await ServerClient.Start(_client, new { checkpoint = await CheckpointId("plain"), steps = 3, count = 2 });
            Assert.Equal(HttpStatusCode.OK, other.StatusCode);
            Assert.Equal("done", (await ServerClient.ReadAll(other))[^1].Name);
        }
        using var free = await ServerClient.Start(_client, new { checkpoint = cond, steps = 3, count = 2 });
        Assert.Equal(HttpStatusCode.OK, free.StatusCode);
        Assert.Equal("done", (await ServerClient.ReadAll(free))[^1].Name);
    }

    [Fact]
    public async Task Leaving_a_generation_cancels_it_within_one_step_and_frees_the_checkpoint()
    {
        var cond = await CheckpointId("cond");
        var finished = new TaskCompletionSource<GenerationRecord>(TaskCreationOptions.RunContinuationsAsynchronously);
        Service.Finished += r => { if (r.CheckpointId == cond && r.StepsTotal == ServerRuns.Timesteps) finished.TrySetResult(r); };
        using var leave = new CancellationTokenSource();
        var response = await ServerClient.Start(_client, new { checkpoint = cond, count = 64 }, leave.Token); // all 1000 steps
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await foreach (var e in ServerClient.Events(response, leave.Token))
        {
            if (e.Name != "frame" || e.Data.GetProperty("step").GetInt32() < 3) continue;
            // A second request while it runs: refused, with a Retry-After extrapolated from the steps so far.
            using var busy = await ServerClient.Start(_client, new { checkpoint = cond, steps = 5, count = 2 });
            Assert.Equal(HttpStatusCode.TooManyRequests, busy.StatusCode);
            Assert.True(busy.Headers.RetryAfter?.Delta >= TimeSpan.FromSeconds(1));
            break;
        }
        leave.Cancel();
        response.Dispose();
        var record = await finished.Task.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(GenerationOutcome.Cancelled, record.Outcome);
        Assert.NotNull(record.StepsAtCancel);
        Assert.True(record.StepsRun - record.StepsAtCancel <= 1, $"ran {record.StepsRun} steps, {record.StepsAtCancel} when cancelled");
        Assert.True(record.StepsRun < ServerRuns.Timesteps);
        using var next = await ServerClient.Start(_client, new { checkpoint = cond, steps = 2, count = 1 });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        Assert.Equal("done", (await ServerClient.ReadAll(next))[^1].Name);
    }
}
