using System.Diagnostics;

namespace Ddpm.Tests.Onnx;

/// <summary>
/// ONNX's own checker (Debian's python3-onnx, 1.12: opset ≤ 17) on exported models, with full shape inference. Skipped
/// with the reason where python3-onnx is missing, except under <c>DDPM_REQUIRE_ONNX_CHECKER=1</c> (set by .ci/run,
/// which installs it).
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class OnnxCheckerTests : IDisposable
{
    private const string Python = "/usr/bin/python3";
    private readonly string _dir = TestPaths.TempDir("onnx-checker");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    internal static string? Problem { get; } = Probe();

    private static string? Probe()
    {
        if (TestCategory.FastRun) return "not probed in the fast subset (it starts no processes)";
        if (!File.Exists(Python)) return $"{Python} not found";
        var (code, _, stderr) = RunPython("-c", "import onnx");
        return code == 0 ? null : $"python3-onnx is not installed (apt-get install python3-onnx): {stderr.Trim().Split('\n')[^1]}";
    }

    private static (int Code, string Stdout, string Stderr) RunPython(params string[] args)
    {
        var info = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Reliability.ChildProcess.Launch(info);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(2)))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Python} {string.Join(" ", args)} ran over 2 minutes");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [OnnxCheckerFact]
    public void Every_config_family_passes_ONNXs_checker_with_full_shape_inference()
    {
        var paths = new List<string>();
        foreach (var family in OnnxFamilies.Names)
        {
            var config = OnnxFamilies.Config(family);
            using var model = OnnxFamilies.RandomModel(config);
            var dir = Directory.CreateDirectory(Path.Combine(_dir, family)).FullName;
            paths.Add(OnnxFamilies.Export(model, config, dir));
        }
        const string script = """
            import sys, onnx
            for path in sys.argv[1:]:
                model = onnx.load(path)
                onnx.checker.check_model(model, full_check=True)
                inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
                out = inferred.graph.output[0].type.tensor_type.shape.dim
                print(path, model.ir_version, model.opset_import[0].version, [d.dim_param or d.dim_value for d in out])
            """;
        var (code, stdout, stderr) = RunPython(["-c", script, .. paths]);
        Assert.True(code == 0, stderr);
        var lines = stdout.Trim().Split('\n');
        Assert.Equal(paths.Count, lines.Length);
        Assert.All(lines, line => Assert.Contains(" 8 17 ['batch', ", line));
    }
}

/// <summary>A fact that needs python3-onnx: skipped with the reason when it is missing, unless
/// DDPM_REQUIRE_ONNX_CHECKER=1.</summary>
public sealed class OnnxCheckerFactAttribute : FactAttribute
{
    public OnnxCheckerFactAttribute()
    {
        if (OnnxCheckerTests.Problem is { } problem && (Environment.GetEnvironmentVariable("DDPM_REQUIRE_ONNX_CHECKER") != "1" || TestCategory.FastRun))
            Skip = problem;
    }
}
