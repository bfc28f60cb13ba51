using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Ddpm.Cli;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Interop;
using Ddpm.IO;
using Ddpm.Models;
using Ddpm.Runtime;
using Ddpm.Sampling;
using Ddpm.Tests.Data;
using Ddpm.Tests.Interop;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// Issue 19's hostile inputs, each crafted here: every one gets one line naming the thing and the problem, the
/// documented exit code (usage 2, failure 1) and never a stack frame (" at ") or a libtorch backtrace.
/// </summary>
[Collection(nameof(ConsoleCapture))]
public sealed class HostileInputTests : IDisposable
{
    private readonly TempFolder _tmp = new();
    private static readonly string TinyYaml = TinyCli.Yaml(imSize: 8, numEpochs: 1, taskName: "hostile");

    public void Dispose() => _tmp.Dispose();

    private static (int Code, string Stderr) Run(params string[] args)
    {
        var (previousErr, previousOut) = (Console.Error, Console.Out);
        var err = new StringWriter();
        Console.SetError(err);
        Console.SetOut(TextWriter.Null);
        try { return (CliApp.Run(args), err.ToString()); }
        finally
        {
            Console.SetError(previousErr);
            Console.SetOut(previousOut);
        }
    }

    /// <summary>Runs the CLI and checks the exit code, the message and that no stack frame or libtorch backtrace was
    /// printed.</summary>
    private static string Expect(int code, string contains, params string[] args)
    {
        var (actual, stderr) = Run(args);
        Assert.True(actual == code, $"exit {actual} (expected {code}) for ddpm {string.Join(' ', args)}:\n{stderr}");
        Assert.Contains(contains, stderr);
        Assert.DoesNotContain("   at ", stderr);
        Assert.DoesNotContain("frame #", stderr);
        Assert.DoesNotContain("Exception raised from", stderr);
        Assert.DoesNotContain("unexpected failure", stderr);
        return stderr;
    }

    private string Config(string text, string name = "tiny.yaml")
    {
        var path = _tmp.File(name);
        File.WriteAllText(path, text);
        return path;
    }

    /// <summary>A step-0 checkpoint of the tiny U-Net (T = 20), written without training.</summary>
    private string TinyCheckpoint(string name = "tiny.ckpt")
    {
        var config = DdpmConfig.Parse(TinyYaml);
        using var model = new UNet(config.Model);
        var path = _tmp.File(name);
        Checkpoint.Save(path, model, config, epoch: 0, step: 0);
        return path;
    }

    /// <summary>Rewrites a checkpoint's manifest.json text (as a crafted or edited file would be).</summary>
    private static void EditManifest(string ckpt, Func<string, string> edit)
    {
        using var zip = ZipFile.Open(ckpt, ZipArchiveMode.Update);
        var entry = zip.GetEntry("manifest.json")!;
        string text;
        using (var r = new StreamReader(entry.Open())) text = r.ReadToEnd();
        entry.Delete();
        using var w = new StreamWriter(zip.CreateEntry("manifest.json").Open());
        w.Write(edit(text));
    }

    /// <summary>Sets the manifest's config, and (as a crafted file would) a matching config_sha256.</summary>
    private static void ReplaceStoredConfig(string ckpt, string yaml, bool updateChecksum = true) => EditManifest(ckpt, text =>
    {
        var json = JsonNode.Parse(text)!.AsObject();
        json["config_yaml"] = yaml;
        if (updateChecksum) json["config_sha256"] = Checkpoint.Sha256Hex(Encoding.UTF8.GetBytes(yaml));
        return json.ToJsonString();
    });

    // ---- case 1: depth and size limits on every parser; the manifest's config under the integrity check ----

    [Fact]
    public void Deeply_nested_yaml_is_refused_not_a_stack_overflow()
    {
        var deep = TinyYaml + "  extra: " + new string('[', 50_000) + new string(']', 50_000) + "\n";
        Expect(1, "nested more than 32 levels", "info", "--config", Config(deep, "deep.yaml"));
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("a: " + new string('{', 40) + new string('}', 40)));
        Assert.Contains("nested", e.Message);
        // Size: a config over 1 MB is refused before it is parsed.
        Expect(1, "at most 1,048,576", "info", "--config", Config(TinyYaml + "# " + new string('x', 1_100_000) + "\n", "big.yaml"));
    }

    [Fact]
    public void A_checkpoint_whose_manifest_holds_deep_yaml_is_refused()
    {
        var ckpt = TinyCheckpoint();
        ReplaceStoredConfig(ckpt, TinyYaml + "  extra: " + new string('[', 50_000) + new string(']', 50_000) + "\n");
        Expect(1, "nested more than", "sample", "--checkpoint", ckpt, "--out", _tmp.File("s"), "--num", "1", "--device", "cpu");
    }

    [Fact]
    public void An_edited_stored_config_fails_the_checkpoint_integrity_check_and_old_manifests_still_load()
    {
        var ckpt = TinyCheckpoint();
        Assert.Equal(2, Checkpoint.ReadManifest(ckpt).Format);
        ReplaceStoredConfig(ckpt, TinyYaml.Replace("num_timesteps: 20", "num_timesteps: 19"), updateChecksum: false);
        Expect(1, "stored config fails its checksum", "sample", "--checkpoint", ckpt, "--out", _tmp.File("s"), "--num", "1", "--device", "cpu");

        // A format-1 manifest (before config_sha256 existed) still loads.
        var old = TinyCheckpoint("old.ckpt");
        EditManifest(old, text =>
        {
            var json = JsonNode.Parse(text)!.AsObject();
            json["format"] = 1;
            json.Remove("config_sha256");
            return json.ToJsonString();
        });
        var manifest = Checkpoint.ReadManifest(old);
        Assert.Equal(1, manifest.Format);
        Assert.Null(manifest.ConfigSha256);
        var (model, config, _) = Checkpoint.LoadModel(old);
        model.Dispose();
        Assert.Equal(20, config.Diffusion.NumTimesteps);
    }

    [Fact]
    public void Duplicate_keys_in_the_manifest_are_refused()
    {
        var ckpt = TinyCheckpoint();
        EditManifest(ckpt, text => text.Replace("\"epoch\": 0,", "\"epoch\": 0, \"epoch\": 7,"));
        Assert.Contains("\"epoch\": 7", ReadManifestText(ckpt));
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.ReadManifest(ckpt));
        Assert.Contains("manifest is corrupt", e.Message);
    }

    private static string ReadManifestText(string ckpt)
    {
        using var zip = ZipFile.OpenRead(ckpt);
        using var r = new StreamReader(zip.GetEntry("manifest.json")!.Open());
        return r.ReadToEnd();
    }

    [Fact]
    public void A_checkpoint_entry_declaring_far_more_than_its_model_needs_is_refused_before_it_is_inflated()
    {
        var ckpt = TinyCheckpoint();
        var zeros = new byte[40 << 20]; // deflates to ~40 KB: a small file that inflates far beyond the tiny model's weights
        using (var zip = ZipFile.Open(ckpt, ZipArchiveMode.Update))
        {
            zip.GetEntry("model.safetensors")!.Delete();
            using var s = zip.CreateEntry("model.safetensors", CompressionLevel.SmallestSize).Open();
            s.Write(zeros);
        }
        EditManifest(ckpt, text =>
        {
            var json = JsonNode.Parse(text)!.AsObject();
            json["sha256"]!["model.safetensors"] = Checkpoint.Sha256Hex(zeros);
            return json.ToJsonString();
        });
        Assert.True(new FileInfo(ckpt).Length < 1 << 20);
        Expect(1, "declares 41,943,040 bytes, more than", "sample", "--checkpoint", ckpt, "--out", _tmp.File("s"), "--num", "1", "--device", "cpu");
    }

    [Fact]
    public void A_zip_entry_is_inflated_no_further_than_its_declared_size_and_limit()
    {
        var ms = new MemoryStream();
        using (var zip = new ZipArchive(ms, ZipArchiveMode.Create, leaveOpen: true))
        using (var s = zip.CreateEntry("e", CompressionLevel.Optimal).Open())
            s.Write(new byte[1 << 20]);
        var bytes = ms.ToArray();
        // Declare 1,000 bytes in both the local and the central header (a lying zip bomb).
        for (int i = 0; i + 4 <= bytes.Length; i++)
        {
            uint sig = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(i));
            if (sig == 0x04034b50) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + 22), 1000);
            if (sig == 0x02014b50) BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(i + 24), 1000);
        }
        using var read = new ZipArchive(new MemoryStream(bytes), ZipArchiveMode.Read);
        // Inflating stops at the declared size (the 1 MiB behind it is never produced) ...
        Assert.Equal(1000, BoundedZip.ReadAll(read.GetEntry("e")!, 10_000).Length);
        // ... and a declared size over the limit is refused before inflating anything.
        var e = Assert.Throws<InvalidDataException>(() => BoundedZip.ReadAll(read.GetEntry("e")!, 500));
        Assert.Contains("declares 1,000 bytes, more than the 500", e.Message);
        Assert.Throws<InvalidDataException>(() => BoundedZip.CheckSizes(read, 500));
    }

    [Fact]
    public void A_pth_zip_bomb_and_deeply_nested_pickles_are_refused()
    {
        var pth = _tmp.File("bomb.pth");
        File.Copy(Fixtures.Pth, pth);
        using (var zip = ZipFile.Open(pth, ZipArchiveMode.Update))
        {
            var folder = zip.Entries.First(x => x.FullName.EndsWith("data.pkl", StringComparison.Ordinal)).FullName.Split('/')[0];
            using var s = zip.CreateEntry(folder + "/data/bomb", CompressionLevel.SmallestSize).Open();
            s.Write(new byte[128 << 20]);
        }
        Assert.True(new FileInfo(pth).Length < 4 << 20);
        Expect(1, "zip entries declare", "sample", "--checkpoint", pth, "--config", Config(Fixtures.Yaml, "fixture.yaml"),
            "--out", _tmp.File("s"), "--num", "1", "--device", "cpu");

        var nested = Enumerable.Repeat((byte)'(', 100).Append((byte)'.').ToArray();
        var w = Assert.Throws<WeightsException>(() => PickleGuard.Verify(nested, "x.pth"));
        Assert.Contains("nested more than 64", w.Message);
    }

    // ---- case 4: sizes bounded in the schema, huge sampling requests batched or refused before allocating ----

    [Fact]
    public void Sizes_have_upper_bounds_in_the_schema()
    {
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse(TinyYaml.Replace("num_timesteps: 20", "num_timesteps: 2000000000")));
        Assert.Equal("diffusion_params.num_timesteps", e.Key);
        Assert.Contains("at most 100,000", e.Message);
        Assert.Equal("model_params.im_size",
            Assert.Throws<ConfigException>(() => DdpmConfig.Parse(TinyYaml.Replace("im_size: 8", "im_size: 1048576"))).Key);
        Assert.Equal("model_params.down_channels",
            Assert.Throws<ConfigException>(() => DdpmConfig.Parse(TinyYaml.Replace("[8, 16, 16, 16]", "[8, 16, 16, 1048576]"))).Key);
        Expect(1, "num_timesteps", "info", "--config", Config(TinyYaml.Replace("num_timesteps: 20", "num_timesteps: 2000000000")));
    }

    [Fact]
    public void A_sampling_request_too_large_for_memory_is_refused_before_anything_is_allocated()
    {
        var ckpt = TinyCheckpoint();
        var clock = Stopwatch.StartNew();
        Expect(1, "sampling needs an estimated", "sample", "--checkpoint", ckpt, "--num", "1000000000", "--out", _tmp.File("s"), "--device", "cpu");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"{clock.Elapsed}");
        Assert.False(File.Exists(Path.Combine(_tmp.File("s"), "samples.png")));
    }

    [Fact]
    public void The_default_batch_is_the_largest_that_fits_the_memory_budget()
    {
        DevicePolicy.EnsureCpuDefaults();
        var config = DdpmConfig.Parse(TinyYaml);
        using var model = new UNet(config.Model);
        using var generator = new ImageGenerator(model, config);
        var one = generator.Plan(new GenerationRequest { Count = 1, MaxBatchSize = 1 }).Memory;
        long budget = one.WeightBytes + 10 * (one.DeviceBytes - one.WeightBytes) + 1;
        int batch = generator.BatchSizeWithin(20_000, budget);
        Assert.Equal(10, batch);
        Assert.True(generator.Plan(new GenerationRequest { Count = 20_000, MaxBatchSize = batch }).Memory.DeviceBytes <= budget);
        Assert.True(generator.Plan(new GenerationRequest { Count = 20_000, MaxBatchSize = batch + 1 }).Memory.DeviceBytes > budget);
        Assert.Equal(7, generator.BatchSizeWithin(7, long.MaxValue / 2));
        Assert.Equal(1, generator.BatchSizeWithin(7, 0));
    }

    // ---- case 5: one top-level error policy for file-system errors; --out checked before the work ----

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void A_bad_out_folder_is_one_line_naming_it_before_the_checkpoint_is_even_read()
    {
        var missing = _tmp.File("missing.ckpt"); // were --out checked after loading, the error would name this instead
        var file = Config("not a folder", "file.txt");
        Expect(1, "--out '/dev/null': is a file, not a folder", "sample", "--checkpoint", missing, "--out", "/dev/null");
        Expect(1, $"--out '{file}': is a file, not a folder", "sample", "--checkpoint", missing, "--out", file);
        Expect(1, "--out: the path is empty", "sample", "--checkpoint", missing, "--out", "");
        Expect(1, "'" + file + "' on its path is a file", "sample", "--checkpoint", missing, "--out", Path.Combine(file, "sub"));
        var loop = MakeLinkLoop();
        Expect(1, "symbolic link loop", "sample", "--checkpoint", missing, "--out", loop);
        Expect(1, "longer than the 255 bytes", "sample", "--checkpoint", missing, "--out", _tmp.File(new string('n', 300)));
        if (!CanWriteReadOnlyFolders())
        {
            var ro = _tmp.File("ro");
            Directory.CreateDirectory(ro);
            File.SetUnixFileMode(ro, UnixFileMode.UserRead | UnixFileMode.UserExecute);
            Expect(1, "cannot be written", "sample", "--checkpoint", missing, "--out", ro);
        }
    }

    /// <summary>Root writes into read-only folders (permission cases are checked only where they apply).</summary>
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private bool CanWriteReadOnlyFolders()
    {
        var probe = _tmp.File("probe-ro");
        Directory.CreateDirectory(probe);
        File.SetUnixFileMode(probe, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        try
        {
            File.WriteAllText(Path.Combine(probe, "x"), "");
            return true;
        }
        catch (UnauthorizedAccessException) { return false; }
        finally { File.SetUnixFileMode(probe, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute); }
    }

    private string MakeLinkLoop()
    {
        var a = _tmp.File("loop-a");
        var b = _tmp.File("loop-b");
        File.CreateSymbolicLink(a, b);
        File.CreateSymbolicLink(b, a);
        return a;
    }

    [Fact]
    public async Task File_system_errors_on_inputs_and_outputs_are_one_line_with_exit_1()
    {
        var loop = MakeLinkLoop();
        var ckpt = TinyCheckpoint();
        Expect(1, "is a symbolic link loop", "info", "--config", loop);
        Expect(1, "is a symbolic link loop", "sample", "--checkpoint", loop, "--out", _tmp.File("s"));
        Expect(1, "--dir", "data", "mnist", "--dir", Config("x", "file"));
        Expect(1, "symbolic link loop", "data", "mnist", "--dir", loop);
        var folder = _tmp.File("out.pth");
        Directory.CreateDirectory(folder);
        Expect(1, "is a folder; give a file name", "export", "--checkpoint", ckpt, "--to", folder);
        // Data paths: a folder where an IDX file belongs, a file where the MNIST folder belongs, a loop.
        Assert.Contains("is a folder, not a file", Assert.Throws<DataException>(() => IdxReader.Read(_tmp.Path)).Message);
        Assert.Contains("is a symbolic link loop", Assert.Throws<DataException>(() => IdxReader.Read(loop)).Message);
        Assert.Contains("is a file, not a folder", (await Assert.ThrowsAsync<DataException>(() => new MnistSource().EnsureAsync(ckpt))).Message);
        Assert.Contains("is a file, not an image folder", Assert.Throws<DataException>(() => ImageFolderReader.Read(ckpt, 1, 8)).Message);
        // A 10,000-character task_name (or any value) is refused by the schema, never echoed into a path.
        var stderr = Expect(1, "train_params.task_name", "info", "--config", Config(TinyYaml.Replace("'hostile'", "'" + new string('t', 10_000) + "'")));
        Assert.True(stderr.Length < 1000, stderr);
        // Anything unexpected: one line, the stack only with --verbose (or DDPM_DEBUG=1).
        Exception boom;
        try { throw new InvalidOperationException("boom"); }
        catch (InvalidOperationException e) { boom = e; }
        var (code, quiet) = Capture(() => CliApp.Report(boom));
        Assert.Equal(1, code);
        Assert.Contains("unexpected failure (InvalidOperationException): boom", quiet);
        Assert.DoesNotContain("   at ", quiet);
        var (_, verbose) = Capture(() => CliApp.Report(boom, verbose: true));
        Assert.Contains("   at ", verbose);
        Assert.Equal(1, Capture(() => CliApp.Report(new UnauthorizedAccessException("Access to the path '/x' is denied."))).Code);
        Assert.Equal("shape mismatch", Ddpm.Runtime.ErrorText.OneLine("shape mismatch\nException raised from x at y.cpp:1\nframe #0: c10::Error"));
    }

    private static (int Code, string Stderr) Capture(Func<int> action)
    {
        var previous = Console.Error;
        var err = new StringWriter();
        Console.SetError(err);
        try { return (action(), err.ToString()); }
        finally { Console.SetError(previous); }
    }

    // ---- case 6: import never writes over its own input ----

    [Fact]
    public void Import_refuses_an_out_that_is_its_weights_by_path_link_or_inode()
    {
        var weights = _tmp.File("w.pth");
        File.Copy(Fixtures.Pth, weights);
        var before = File.ReadAllBytes(weights);
        var config = Config(Fixtures.Yaml, "fixture.yaml");
        Expect(2, "is the same file as the --weights input", "import", "--weights", weights, "--config", config, "--out", weights);
        var symlink = _tmp.File("link.pth");
        File.CreateSymbolicLink(symlink, weights);
        Expect(2, "is the same file as the --weights input", "import", "--weights", weights, "--config", config, "--out", symlink);
        var hardlink = _tmp.File("hard.pth");
        Assert.True(FileDurability.TryHardLink(weights, hardlink));
        Expect(2, "is the same file as the --weights input", "import", "--weights", hardlink, "--config", config, "--out", weights);
        Expect(2, "is the same file as the --weights input", "import", "--weights", weights, "--config", config,
            "--out", Path.Combine(_tmp.Path, ".", "w.pth"));
        Assert.Equal(before, File.ReadAllBytes(weights));
        // Export likewise refuses --to = --checkpoint (raw weights converted in place).
        var st = _tmp.File("w.safetensors");
        File.Copy(Fixtures.Safetensors, st);
        Expect(2, "same file as --checkpoint", "export", "--checkpoint", st, "--config", config, "--to", st);
    }

    // ---- case 8: non-finite weights ----

    [Fact]
    public void Non_finite_weights_are_refused_on_load_unless_allowed_with_a_loud_warning()
    {
        var config = Config(Fixtures.Yaml, "fixture.yaml");
        var nan = _tmp.File("nan.safetensors");
        var state = StateDictIo.Read(Fixtures.Safetensors);
        try
        {
            var key = state.Keys.Order(StringComparer.Ordinal).First();
            state[key].fill_(double.NaN);
            StateDictIo.Write(nan, state);
        }
        finally { foreach (var t in state.Values) t.Dispose(); }
        Expect(1, "hold NaN or infinite values", "sample", "--checkpoint", nan, "--config", config, "--out", _tmp.File("s"), "--num", "1", "--device", "cpu");
        Expect(1, "hold NaN or infinite values", "import", "--weights", nan, "--config", config, "--out", _tmp.File("nan.ckpt"));
        Assert.False(File.Exists(_tmp.File("nan.ckpt")));
        // Allowed: it loads, with a warning naming the problem.
        var (code, stderr) = Run("import", "--weights", nan, "--config", config, "--out", _tmp.File("nan.ckpt"), "--allow-nonfinite");
        Assert.True(code == 0, stderr);
        Assert.Contains("WARNING: --allow-nonfinite", stderr);
        // The checkpoint made from it is refused in turn.
        Expect(1, "hold NaN or infinite values", "sample", "--checkpoint", _tmp.File("nan.ckpt"), "--out", _tmp.File("s"), "--num", "1", "--device", "cpu");
        var e = Assert.Throws<WeightsException>(() => ModelFile.Load(_tmp.File("nan.ckpt")));
        Assert.Contains("of", e.Message);
    }

    // ---- case 9: eval checks its paths before any classifier work ----

    [Fact]
    public void Eval_checks_out_before_reading_the_checkpoint_or_training_a_classifier()
    {
        var file = Config("x", "file.txt");
        Expect(1, "--out '" + file + "': is a file", "eval", "--checkpoint", _tmp.File("missing.ckpt"), "--out", file, "--device", "cpu");
        Expect(1, "is neither an image folder nor an IDX file", "eval", "--images", _tmp.File("missing"), "--out", _tmp.File("e"), "--device", "cpu");
    }

    // ---- case 10: the smaller ones ----

    [Fact]
    public void A_temporary_left_by_a_killed_export_is_removed_by_the_next_write()
    {
        var ckpt = TinyCheckpoint();
        var target = _tmp.File("target.pth");
        var stale = target + ".tmp-" + ChildProcess.DeadPid();
        File.WriteAllText(stale, "half an export");
        var (code, stderr) = Run("export", "--checkpoint", ckpt, "--to", target);
        Assert.True(code == 0, stderr);
        Assert.False(File.Exists(stale), "the dead writer's temporary is still there");
        Assert.True(File.Exists(target));
        Assert.DoesNotContain(_tmp.Contents(), f => f.Contains(".tmp-", StringComparison.Ordinal));
    }

    [Fact]
    public void Safetensors_headers_with_overlapping_offsets_or_duplicate_names_are_refused()
    {
        static byte[] File(string header, int dataBytes)
        {
            var h = Encoding.UTF8.GetBytes(header);
            var bytes = new byte[8 + h.Length + dataBytes];
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)h.Length);
            h.CopyTo(bytes, 8);
            return bytes;
        }
        var overlap = File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12);
        Assert.Contains("overlapping", Assert.Throws<CheckpointException>(() => SafetensorsWeights.Validate(overlap, "x")).Message);
        var duplicate = File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16);
        Assert.Contains("not valid JSON", Assert.Throws<CheckpointException>(() => SafetensorsWeights.Validate(duplicate, "x")).Message);
        var fine = File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}""", 16);
        SafetensorsWeights.Validate(fine, "x");
        var path = _tmp.File("overlap.safetensors");
        System.IO.File.WriteAllBytes(path, overlap);
        Expect(1, "overlapping data_offsets", "sample", "--checkpoint", path, "--config", Config(Fixtures.Yaml, "fixture.yaml"), "--out", _tmp.File("s"));
    }

    [Fact]
    public void An_empty_config_or_a_folder_as_config_is_refused()
    {
        Expect(1, "is empty", "info", "--config", Config("", "empty.yaml"));
        Expect(1, "is empty", "info", "--config", Config("# nothing but a comment\n\n", "comment.yaml"));
        Assert.Throws<ConfigException>(() => DdpmConfig.Parse("~"));
        Expect(1, "is a folder, not a file", "info", "--config", _tmp.Path);
    }

    [Fact]
    public void An_architecture_mismatch_from_a_manifest_prints_no_libtorch_frames()
    {
        var ckpt = TinyCheckpoint();
        ReplaceStoredConfig(ckpt, TinyYaml.Replace("time_emb_dim: 16", "time_emb_dim: 32"));
        Expect(1, "do not fit", "sample", "--checkpoint", ckpt, "--out", _tmp.File("s"), "--num", "1", "--device", "cpu");
    }

    [Fact]
    public void Bad_option_values_are_usage_errors_in_every_command()
    {
        var config = Config(TinyYaml);
        var ckpt = _tmp.File("missing.ckpt");
        Expect(2, "--batch-size must be >= 1, got 0", "train", "--config", config, "--batch-size", "0", "--out", _tmp.File("r"));
        Expect(2, "--num must be >= 1, got 0", "sample", "--checkpoint", ckpt, "--num", "0");
        Expect(2, "--batch-size must be >= 1, got 0", "sample", "--checkpoint", ckpt, "--batch-size", "0");
        Expect(2, "--lr must be a finite number, got Infinity", "train", "--config", config, "--lr", "Infinity", "--out", _tmp.File("r"));
        Expect(2, "inf", "train", "--config", config, "--lr", "inf", "--out", _tmp.File("r"));
        Expect(2, "--lr must be > 0", "train", "--config", config, "--lr", "0", "--out", _tmp.File("r"));
        Expect(2, "--guidance must be a finite number", "sample", "--checkpoint", ckpt, "--guidance", "NaN");
        Expect(2, "--epochs must be >= 1", "train", "--config", config, "--epochs", "0", "--out", _tmp.File("r"));
        Assert.False(Directory.Exists(_tmp.File("r")));
    }

    [Fact]
    public void Sample_clears_an_earlier_samples_files_from_out_and_says_so()
    {
        var ckpt = TinyCheckpoint();
        var outDir = _tmp.File("samples");
        Directory.CreateDirectory(outDir);
        foreach (var old in new[] { "samples.png", "reverse.png", "x_0018.png" }) File.WriteAllText(Path.Combine(outDir, old), "older run");
        File.WriteAllText(Path.Combine(outDir, "notes.txt"), "the user's");
        var (code, stderr) = Run("sample", "--checkpoint", ckpt, "--out", outDir, "--num", "1", "--frames", "0", "--device", "cpu");
        Assert.True(code == 0, stderr);
        Assert.Contains("removed 3 file(s) of an earlier sample", stderr);
        Assert.False(File.Exists(Path.Combine(outDir, "x_0018.png")));
        Assert.True(File.Exists(Path.Combine(outDir, "notes.txt")));
        Assert.NotEqual("older run", File.ReadAllText(Path.Combine(outDir, "samples.png")));
    }
}
