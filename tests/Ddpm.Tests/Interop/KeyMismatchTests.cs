using Ddpm.Interop;
using Ddpm.Models;
using Ddpm.Tests.Data;
using TorchSharp.PyBridge;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Interop;

/// <summary>Every missing, unexpected and mis-shaped key is reported by name, and nothing is loaded
/// partially.</summary>
public sealed class KeyMismatchTests : IDisposable
{
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private const string Missing1 = "conv_in.weight", Missing2 = "ups.0.attentions.0.in_proj_bias";
    private const string Reshaped = "t_proj.0.weight";

    /// <summary>The fixture state_dict with <paramref name="edit"/> applied, saved as safetensors.</summary>
    private string Edited(Action<Dictionary<string, Tensor>> edit)
    {
        var sd = StateDictIo.Read(Fixtures.Safetensors);
        edit(sd);
        var path = _tmp.File("edited.safetensors");
        Safetensors.SaveStateDict(path, sd);
        foreach (var t in sd.Values) t.Dispose();
        return path;
    }

    private string AllThreeProblems() => Edited(sd =>
    {
        sd.Remove(Missing1);
        sd.Remove(Missing2);
        sd["extra.weight"] = zeros(3);
        sd["downs.9.bias"] = zeros(3);
        sd[Reshaped] = zeros(16, 32);
    });

    [Fact]
    public void Every_problem_is_listed_by_name_and_the_model_is_left_untouched()
    {
        var path = AllThreeProblems();
        var sd = StateDictIo.Read(path);
        using var model = new UNet(Fixtures.Config.Model);
        var before = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        var e = Assert.Throws<WeightsException>(() => StateDictIo.LoadInto(model, sd, strict: true, path));

        Assert.Equal([Missing1, Missing2], e.MissingKeys);
        Assert.Equal(["downs.9.bias", "extra.weight"], e.UnexpectedKeys);
        Assert.Equal([$"{Reshaped} (file [16, 32], model [32, 32])"], e.MismatchedKeys);
        foreach (var name in new[] { Missing1, Missing2, "extra.weight", "downs.9.bias", Reshaped })
            Assert.Contains(name, e.Message);
        foreach (var (key, t) in model.state_dict())
            Assert.True(t.bytes.SequenceEqual(before[key].bytes), $"{key} was changed by a failed load");
        foreach (var t in sd.Values.Concat(before.Values)) t.Dispose();
    }

    [Fact]
    public void Non_strict_loading_allows_missing_keys_and_lists_them()
    {
        var path = Edited(sd => { sd.Remove(Missing1); sd.Remove(Missing2); });
        using var loaded = ModelFile.Load(path, Fixtures.Config, strict: false);
        Assert.Equal([Missing1, Missing2], loaded.MissingKeys);

        var strict = Assert.Throws<WeightsException>(() => ModelFile.Load(path, Fixtures.Config));
        Assert.Equal([Missing1, Missing2], strict.MissingKeys);
    }

    [Fact]
    public void Non_strict_loading_still_refuses_unexpected_and_mis_shaped_keys()
    {
        var e = Assert.Throws<WeightsException>(() => ModelFile.Load(AllThreeProblems(), Fixtures.Config, strict: false));
        Assert.Empty(e.MissingKeys);
        Assert.Equal(2, e.UnexpectedKeys.Count);
        Assert.Single(e.MismatchedKeys);
    }

    [Fact]
    public void Raw_weights_without_a_config_are_refused()
    {
        var e = Assert.Throws<ArgumentException>(() => ModelFile.Load(Fixtures.Pth));
        Assert.Contains("config is required", e.Message);
    }

    [Fact]
    public void A_file_of_another_kind_is_refused_clearly()
    {
        var path = _tmp.File("notes.pth");
        File.WriteAllText(path, "hello");
        var e = Assert.Throws<WeightsException>(() => StateDictIo.Detect(path));
        Assert.Contains("not a ddpm checkpoint, PyTorch state_dict (.pth) or safetensors file", e.Message);
    }
}
