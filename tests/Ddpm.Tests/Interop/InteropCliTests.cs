using Ddpm.Cli;
using Ddpm.Interop;
using Ddpm.Tests.Data;
using Xunit;

namespace Ddpm.Tests.Interop;

[CollectionDefinition(nameof(ConsoleCapture), DisableParallelization = true)]
public sealed class ConsoleCapture;

/// <summary><c>ddpm sample/import/export</c> on the PyTorch reference's files.</summary>
[Collection(nameof(ConsoleCapture))]
public sealed class InteropCliTests : IDisposable
{
    private readonly TempFolder _tmp = new();
    private readonly string _config;

    public InteropCliTests()
    {
        _config = _tmp.File("small_unet.yaml");
        File.WriteAllText(_config, Fixtures.Yaml);
    }

    public void Dispose() => _tmp.Dispose();

    private static (int Code, string Stderr) Run(params string[] args)
    {
        var previous = Console.Error;
        var err = new StringWriter();
        Console.SetError(err);
        try { return (CliApp.Run(args), err.ToString()); }
        finally { Console.SetError(previous); }
    }

    [Theory]
    [InlineData("small_unet.pth")]
    [InlineData("small_unet.safetensors")]
    public void Sample_runs_directly_on_reference_weights_with_a_config(string file)
    {
        var outDir = _tmp.File("samples");
        var (code, stderr) = Run("sample", "--checkpoint", TestPaths.Fixture(file), "--config", _config,
            "--out", outDir, "--frames", "0", "--device", "cpu");
        Assert.True(code == CliApp.Ok, stderr);
        Assert.True(File.Exists(Path.Combine(outDir, "samples.png")));
        Assert.Contains("sampled 4 images in 10 steps of dpmpp-2m-sde (karras)", stderr); // the default sampler, at most T = 10 steps
    }

    [Fact]
    public void Sample_on_raw_weights_without_a_config_is_a_usage_error()
    {
        var (code, stderr) = Run("sample", "--checkpoint", Fixtures.Pth, "--out", _tmp.File("s"), "--device", "cpu");
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains("pass --config", stderr);
        Assert.Contains("raw PyTorch weights", stderr);
    }

    [Fact]
    public void Import_then_export_gives_back_the_reference_file_bit_for_bit()
    {
        var ckpt = _tmp.File("imported.ckpt");
        var (code, stderr) = Run("import", "--weights", Fixtures.Pth, "--config", _config, "--out", ckpt);
        Assert.True(code == CliApp.Ok, stderr);
        Assert.Equal(WeightFormat.Checkpoint, StateDictIo.Detect(ckpt));

        var exported = _tmp.File("back.safetensors");
        (code, stderr) = Run("export", "--checkpoint", ckpt, "--to", exported);
        Assert.True(code == CliApp.Ok, stderr);
        var reference = StateDictIo.Read(Fixtures.Safetensors);
        var back = StateDictIo.Read(exported);
        Assert.Equal(reference.Keys.Order(StringComparer.Ordinal), back.Keys.Order(StringComparer.Ordinal));
        foreach (var (key, t) in reference) Assert.True(t.bytes.SequenceEqual(back[key].bytes), key);
        foreach (var t in reference.Values.Concat(back.Values)) t.Dispose();

        // The imported checkpoint samples without --config.
        (code, stderr) = Run("sample", "--checkpoint", ckpt, "--out", _tmp.File("s"), "--frames", "0", "--num", "1", "--device", "cpu");
        Assert.True(code == CliApp.Ok, stderr);
    }

    [Fact]
    public void A_crafted_pickle_fails_with_exit_code_1_and_names_the_global()
    {
        var evil = _tmp.File("evil.pth");
        using (var zip = System.IO.Compression.ZipFile.Open(evil, System.IO.Compression.ZipArchiveMode.Create))
        using (var s = zip.CreateEntry("archive/data.pkl").Open())
            s.Write([0x80, 0x02, (byte)'c', .. "os\nsystem\n"u8, (byte)'X', 2, 0, 0, 0, (byte)'i', (byte)'d', 0x85, (byte)'R', (byte)'.']);
        var (code, stderr) = Run("import", "--weights", evil, "--config", _config, "--out", _tmp.File("x.ckpt"));
        Assert.Equal(CliApp.Failure, code);
        Assert.Contains("os.system", stderr);
        Assert.False(File.Exists(_tmp.File("x.ckpt")));
    }

    [Fact]
    public void Export_to_an_unknown_extension_is_a_usage_error()
    {
        var (code, stderr) = Run("export", "--checkpoint", Fixtures.Pth, "--config", _config, "--to", _tmp.File("model.h5"));
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains(".safetensors", stderr);
    }
}
