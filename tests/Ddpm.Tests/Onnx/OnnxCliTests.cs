using Ddpm.Cli;
using Ddpm.Onnx;
using Ddpm.Sampling;
using Ddpm.Tests.Server;
using static TorchSharp.torch;

namespace Ddpm.Tests.Onnx;

/// <summary><c>ddpm export --to model.onnx</c> and <c>--web FOLDER</c>: what they write, and one clear error for bad
/// input.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class OnnxCliTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("onnx-cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    [Fact]
    public void Export_to_onnx_writes_the_checkpoints_EMA_weights_which_compute_what_the_sampling_model_computes()
    {
        var checkpoint = ServerRuns.Shared.CondCheckpoint; // trained with ema_decay 0.9
        var onnx = PathOf("cond.onnx");
        var (code, stderr) = TinyCli.RunCapturingStderr("export", "--checkpoint", checkpoint, "--to", onnx);
        Assert.True(code == CliApp.Ok, stderr);
        Assert.Contains("(EMA) as ONNX (opset 17)", stderr);
        using var denoiser = OnnxDenoiser.Load(onnx);
        Assert.Equal("checkpoint.ckpt (EMA)", denoiser.Info.Source);
        Assert.Equal(2, denoiser.Info.NumClasses);

        using var generator = ImageGenerator.Load(checkpoint); // what 'ddpm sample' runs: the EMA weights
        Assert.True(generator.UsesEma);
        int size = ServerRuns.ImageSize;
        using var x = randn([2, 1, size, size], generator: new Generator(3));
        long[] ts = [10, 900], ys = [1, 2];
        float[] expected;
        using (no_grad())
        using (var t = tensor(ts))
        using (var y = tensor(ys))
        using (var output = generator.Model.forward(x, t, y))
            expected = output.data<float>().ToArray();
        var actual = new float[expected.Length];
        denoiser.Forward(x.data<float>().ToArray(), ts, ys, actual);
        Assert.True(OnnxFamilies.RelativeError(actual, expected) < 1e-4);
    }

    [Fact]
    public void Export_web_writes_the_page_the_model_and_onnxruntime_web_and_replaces_an_earlier_export()
    {
        var web = PathOf("web");
        for (int round = 0; round < 2; round++)
        {
            var (code, stderr) = TinyCli.RunCapturingStderr("export", "--checkpoint", ServerRuns.Shared.PlainCheckpoint, "--web", web);
            Assert.True(code == CliApp.Ok, stderr);
        }
        string[] files = ["index.html", "ddpm.js", "style.css", "model.onnx", "model.json",
            "ort/ort.wasm.min.mjs", "ort/ort-wasm-simd-threaded.mjs", "ort/ort-wasm-simd-threaded.wasm", "ort/package.json"];
        Assert.Equal(files.Order(), Directory.EnumerateFiles(web, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(web, f)).Order());
        Assert.Contains("\"version\": \"1.30.0\"", File.ReadAllText(Path.Combine(web, "ort", "package.json")));
        Assert.Equal([web], Directory.EnumerateFileSystemEntries(_dir)); // no staging folder left
        using var denoiser = OnnxDenoiser.Load(Path.Combine(web, "model.onnx"));
        Assert.False(denoiser.Info.IsConditional);
    }

    [Fact]
    public void Bad_export_requests_get_one_clear_error_and_leave_nothing_behind()
    {
        var checkpoint = ServerRuns.Shared.PlainCheckpoint;
        var (code, stderr) = TinyCli.RunCapturingStderr("export", "--checkpoint", checkpoint);
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains("give --to FILE (.pth, .pt, .bin, .safetensors, .ckpt or .onnx) or --web FOLDER", stderr);

        var busy = Directory.CreateDirectory(PathOf("busy")).FullName;
        File.WriteAllText(Path.Combine(busy, "notes.txt"), "mine");
        (code, stderr) = TinyCli.RunCapturingStderr("export", "--checkpoint", checkpoint, "--web", busy);
        Assert.Equal(CliApp.Failure, code);
        Assert.Contains("is not empty and not an earlier web export", stderr);
        Assert.Equal(["notes.txt"], Directory.EnumerateFileSystemEntries(busy).Select(Path.GetFileName));
        Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));

        var file = PathOf("file");
        File.WriteAllText(file, "x");
        (code, stderr) = TinyCli.RunCapturingStderr("export", "--checkpoint", checkpoint, "--web", file);
        Assert.Equal(CliApp.Failure, code);
        Assert.Contains("is a file; give a folder", stderr);

        (code, stderr) = TinyCli.RunCapturingStderr("export", "--checkpoint", checkpoint, "--to", PathOf("model.tflite"));
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains(".safetensors, .ckpt (weights only) or .onnx (ONNX)", stderr);
        Assert.Equal(["busy", "file"], Directory.EnumerateFileSystemEntries(_dir).Select(Path.GetFileName).Order());
    }
}
