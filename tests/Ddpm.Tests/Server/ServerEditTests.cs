using System.Net;
using System.Text;
using System.Text.Json;
using Ddpm.Imaging;
using Ddpm.Server;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.TestHost;
using static TorchSharp.torch;

namespace Ddpm.Tests.Server;

/// <summary>
/// The page's edits over the API (<c>mode</c>: inpaint, img2img, interpolate): the stream ends in the grid the CLI
/// writes for the same inputs, and the library's plan refuses bad edits with a 400 before any event.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public sealed class ServerEditTests : IDisposable
{
    private const int Size = ServerRuns.ImageSize;
    private readonly ServerRuns _runs = ServerRuns.Shared;
    private readonly WebApplication _app;
    private readonly HttpClient _client;
    private readonly string _dir = TestPaths.TempDir("serve-edit");

    public ServerEditTests()
    {
        _app = ServerRuns.InMemory(new ServerOptions
        {
            RunsDirectory = _runs.Runs, Limits = new GenerationLimits { MaxImages = 64, MaxImageSteps = 70_000 }, FrameInterval = TimeSpan.Zero,
            FrameQueue = 10_000, // every frame kept, so that the stream can be counted
        });
        _client = _app.GetTestClient();
    }

    public void Dispose()
    {
        _client.Dispose();
        _app.DisposeAsync().AsTask().GetAwaiter().GetResult();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<string> CheckpointId(string run)
    {
        var runs = await ServerClient.Json(_client, "api/runs");
        return runs.EnumerateArray().Single(r => r.GetProperty("name").GetString() == run).GetProperty("checkpoints").EnumerateArray()
            .Single(c => c.GetProperty("name").GetString() == "checkpoint.ckpt").GetProperty("id").GetString()!;
    }

    /// <summary>A drawing as the page sends it: a diagonal stroke on black, 16×16 gray PNG.</summary>
    private static byte[] Drawing()
    {
        using var scope = NewDisposeScope();
        var image = -ones(1, 1, Size, Size);
        for (int i = 2; i < Size - 2; i++) image[0, 0, i, i] = 1;
        return ImageGrid.ToPng(image, 1, padding: 0);
    }

    /// <summary>Keep the left half (white), complete the right half (black).</summary>
    private static byte[] LeftHalf()
    {
        using var scope = NewDisposeScope();
        var mask = -ones(1, 1, Size, Size);
        mask[.., .., .., ..(Size / 2)] = 1;
        return ImageGrid.ToPng(mask, 1, padding: 0);
    }

    private static string Url(byte[] png) => "data:image/png;base64," + Convert.ToBase64String(png);

    private string File(string name, byte[] png)
    {
        var path = Path.Combine(_dir, name);
        System.IO.File.WriteAllBytes(path, png);
        return path;
    }

    [Theory]
    [InlineData("inpaint")]
    [InlineData("img2img")]
    [InlineData("interpolate")]
    public async Task An_edit_streams_frames_and_ends_in_the_grid_the_cli_writes_for_the_same_inputs(string mode)
    {
        var id = await CheckpointId("cond");
        object body = mode switch
        {
            "inpaint" => new { checkpoint = id, mode, sampler = "ddpm", steps = 8, count = 4, rows = 2, seed = 5, image = Url(Drawing()),
                mask = Url(LeftHalf()), resample = 2, jump = 2, @class = 1, guidance = 1.0 },
            "img2img" => new { checkpoint = id, mode, sampler = "ddim", steps = 8, count = 4, rows = 2, seed = 5, image = Url(Drawing()), strength = 0.6 },
            _ => new { checkpoint = id, mode, sampler = "ddim", steps = 8, frames = 5, seed = 4, toSeed = 9, @class = 0, toClass = 1, guidance = 1.0 },
        };
        using var response = await ServerClient.Start(_client, body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = await ServerClient.ReadAll(response);
        var start = events[0];
        Assert.Equal("start", start.Name);
        Assert.Equal(mode, start.Data.GetProperty("mode").GetString());
        // The model calls of one batch: RePaint's r = 2, j = 2 over 8 steps adds 2 × 3; SDEdit at 0.6 runs the grid's
        // tail.
        int calls = start.Data.GetProperty("steps").GetInt32();
        Assert.Equal(mode switch { "inpaint" => 8 + 2 * 3, "img2img" => 5, _ => 8 }, calls);
        Assert.True(calls - 1 == events.Count(e => e.Name == "frame"), string.Join("; ", events.Select(e => e.Name + " " + e.Data.ToString()[..Math.Min(200, e.Data.ToString().Length)])));
        var done = Assert.Single(events, e => e.Name == "done");
        var page = ServerClient.Decode(ServerClient.PngOf(done.Data.GetProperty("png").GetString()!));

        var outDir = Path.Combine(_dir, "cli-" + mode);
        var common = new[] { "--checkpoint", _runs.CondCheckpoint, "--out", outDir, "--device", "cpu", "--frames", "0" };
        string[] args = mode switch
        {
            "inpaint" => ["inpaint", .. common, "--image", File("drawing.png", Drawing()), "--mask", File("mask.png", LeftHalf()), "--num", "4",
                "--grid-rows", "2", "--seed", "5", "--sampler", "ddpm", "--steps", "8", "--resample", "2", "--jump", "2", "--class", "1", "--guidance", "1"],
            "img2img" => ["sample", .. common, "--init", File("drawing.png", Drawing()), "--strength", "0.6", "--num", "4", "--grid-rows", "2",
                "--seed", "5", "--sampler", "ddim", "--steps", "8"],
            _ => ["interpolate", "--checkpoint", _runs.CondCheckpoint, "--out", outDir, "--device", "cpu", "--seeds", "4,9", "--num", "5",
                "--classes", "0,1", "--guidance", "1", "--sampler", "ddim", "--steps", "8"],
        };
        var (code, stderr) = TinyCli.RunCapturingStderr(args);
        Assert.True(code == 0, stderr);
        var grid = Path.Combine(outDir, "samples.png");
        var cli = ServerClient.Decode(System.IO.File.ReadAllBytes(grid));
        Assert.Equal((cli.Width, cli.Height), (page.Width, page.Height));
        Assert.Equal(cli.Pixels, page.Pixels);
    }

    public static TheoryData<string, string> BadEdits() => new()
    {
        { """{"checkpoint": "ID", "mode": "paint"}""", "mode: must be sample, inpaint, img2img or interpolate" },
        { """{"checkpoint": "ID", "image": "IMAGE"}""", "image: applies to mode inpaint or img2img, not sample" },
        { """{"checkpoint": "ID", "mode": "img2img", "mask": "MASK", "image": "IMAGE"}""", "mask: applies to mode inpaint" },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "IMAGE"}""", "mask: required" },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "http://example.com/a.png", "mask": "MASK"}""", "image: must be a data:image/png;base64," },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "data:image/png;base64,%%%", "mask": "MASK"}""", "image: the data URL is not valid base64" },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "data:image/png;base64,AAAA", "mask": "MASK"}""", "image: cannot be decoded" },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "SMALL", "mask": "MASK"}""", "image: is 8×8; the model makes 16×16 images" },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "IMAGE", "mask": "WHITE"}""", "the mask keeps every pixel: nothing to inpaint" },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "IMAGE", "mask": "BLACK"}""", "the mask keeps no pixel" },
        { """{"checkpoint": "ID", "mode": "inpaint", "image": "IMAGE", "mask": "MASK", "resample": 2, "sampler": "unipc"}""", "resampling needs a single-step sampler" },
        { """{"checkpoint": "ID", "mode": "img2img", "image": "IMAGE", "strength": 1.5}""", "the strength must lie in (0, 1], got 1.5" },
        { """{"checkpoint": "ID", "mode": "img2img", "image": "IMAGE", "strength": 0}""", "the strength must lie in (0, 1], got 0" },
        { """{"checkpoint": "ID", "mode": "interpolate", "frames": 1}""", "frames must be >= 2" },
        { """{"checkpoint": "ID", "mode": "interpolate", "count": 4}""", "count: an interpolation has frames" },
        { """{"checkpoint": "ID", "mode": "interpolate", "toClass": 1}""", "toClass: needs class" },
        { """{"checkpoint": "ID", "mode": "interpolate", "class": 0, "toClass": 2}""", "class 2" },
    };

    [Theory]
    [MemberData(nameof(BadEdits))]
    public async Task A_bad_edit_gets_400_with_the_librarys_message_before_any_event(string body, string expected)
    {
        using var scope = NewDisposeScope();
        body = body.Replace("\"ID\"", $"\"{await CheckpointId("cond")}\"").Replace("\"IMAGE\"", $"\"{Url(Drawing())}\"")
            .Replace("\"MASK\"", $"\"{Url(LeftHalf())}\"").Replace("\"SMALL\"", $"\"{Url(ImageGrid.ToPng(zeros(1, 1, 8, 8), 1, padding: 0))}\"")
            .Replace("\"WHITE\"", $"\"{Url(ImageGrid.ToPng(ones(1, 1, Size, Size), 1, padding: 0))}\"")
            .Replace("\"BLACK\"", $"\"{Url(ImageGrid.ToPng(-ones(1, 1, Size, Size), 1, padding: 0))}\"");
        using var response = await _client.PostAsync("api/generate", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var detail = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("detail").GetString();
        Assert.Contains(expected, detail);
    }
}
