using Ddpm.Configuration;
using Ddpm.IO;
using Ddpm.Models;
using Ddpm.Runtime;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Interop;

/// <summary>
/// Loads a U-Net from any weight file this project reads (its own checkpoint, a PyTorch <c>.pth</c> state_dict, a
/// safetensors state_dict), converts raw weights into a checkpoint, and exports weights for PyTorch.
/// </summary>
public static class ModelFile
{
    /// <summary>
    /// Loads by content (<see cref="StateDictIo.Detect(string)"/>). A ddpm checkpoint carries its config and
    /// <paramref name="config"/> is not used; raw weights need <paramref name="config"/> for the architecture.
    /// </summary>
    /// <param name="strict">When false, keys missing from raw weights keep their initial values (listed in
    /// <see cref="LoadedModel.MissingKeys"/>); unexpected keys and shape mismatches are errors either way.</param>
    /// <exception cref="ArgumentException">Raw weights without a config.</exception>
    /// <exception cref="WeightsException">Unreadable, unsafe or non-fitting raw weights (every bad key
    /// listed).</exception>
    /// <param name="allowNonFinite">When false (the default), weights holding NaN or infinite values are refused
    /// (<see cref="WeightsException"/> naming the tensors); when true they load and are listed in
    /// <see cref="LoadedModel.NonFiniteTensors"/>.</param>
    /// <param name="useEma">Load a checkpoint's EMA weights instead of its raw ones when it has them
    /// (<see cref="LoadedModel.UsesEma"/> says whether it did); the finite check is then of the EMA weights.</param>
    /// <exception cref="CheckpointException">A corrupt ddpm checkpoint.</exception>
    public static LoadedModel Load(string path, DdpmConfig? config = null, bool strict = true, bool allowNonFinite = false, bool useEma = false)
    {
        TorchSharpPatch.EnsureApplied();
        var loaded = LoadUnchecked(path, config, strict, useEma);
        try
        {
            return loaded with { NonFiniteTensors = CheckFinite(loaded.Model, path, allowNonFinite) };
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The tensors of <paramref name="model"/> holding NaN or ±∞ ("name (k of n values)"). Unless
    /// <paramref name="allow"/>, any is a <see cref="WeightsException"/> naming <paramref name="path"/> and them: such
    /// weights sample flat or NaN images.
    /// </summary>
    public static IReadOnlyList<string> CheckFinite(nn.Module model, string path, bool allow = false)
    {
        var bad = new List<string>();
        using (no_grad())
            foreach (var (name, t) in model.state_dict())
            {
                if (!t.is_floating_point()) continue;
                using var scope = NewDisposeScope(); // no temporary is left to a finalizer
                long count = t.isfinite().logical_not().sum().item<long>();
                if (count > 0) bad.Add($"{name} ({count:N0} of {t.numel():N0} values)");
            }
        if (bad.Count > 0 && !allow)
            throw new WeightsException(path, $"{bad.Count} tensor(s) hold NaN or infinite values: {string.Join(", ", bad.Take(10))}" +
                (bad.Count > 10 ? $", … ({bad.Count - 10} more)" : "") + "; refusing to use them (--allow-nonfinite loads them anyway)");
        return bad;
    }

    private static LoadedModel LoadUnchecked(string path, DdpmConfig? config, bool strict, bool useEma)
    {
        // A checkpoint is read through the one descriptor opened here: its weights, EMA and manifest are of one file
        // even when training replaces or prunes the path meanwhile.
        var file = StateDictIo.OpenChecked(path);
        WeightFormat format;
        try { format = StateDictIo.Detect(file, path); }
        catch
        {
            file.Dispose();
            throw;
        }
        if (format == WeightFormat.Checkpoint)
        {
            using var checkpoint = CheckpointReader.Open(file, path);
            var model = checkpoint.LoadModel();
            try
            {
                bool ema = useEma && checkpoint.HasEma;
                if (ema) checkpoint.LoadEmaInto(model);
                return new LoadedModel(model, checkpoint.Config, format, checkpoint.Manifest, []) { UsesEma = ema };
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }
        file.Dispose();
        if (config is null)
            throw new ArgumentException($"'{path}' holds raw {format} weights without an architecture: a config is required", nameof(config));
        var stateDict = StateDictIo.Read(path);
        try
        {
            var unet = new UNet(config.Model);
            try
            {
                var missing = StateDictIo.LoadInto(unet, stateDict, strict, path);
                return new LoadedModel(unet, config, format, null, missing);
            }
            catch
            {
                unet.Dispose();
                throw;
            }
        }
        finally
        {
            foreach (var t in stateDict.Values) t.Dispose();
        }
    }

    /// <summary>
    /// The config the weights at <paramref name="path"/> need: null for a ddpm checkpoint, which carries its own (a
    /// given <paramref name="configPath"/> is then ignored, with a <paramref name="warn"/>ing), else the config at
    /// <paramref name="configPath"/>.
    /// </summary>
    /// <exception cref="RequestException">Raw weights without <paramref name="configPath"/>.</exception>
    public static DdpmConfig? ConfigFor(string path, string? configPath, Action<string>? warn = null)
    {
        var format = StateDictIo.Detect(path);
        if (format == WeightFormat.Checkpoint)
        {
            if (configPath is not null) warn?.Invoke($"--config ignored: '{path}' is a ddpm checkpoint and carries its own config");
            return null;
        }
        return configPath is null
            ? throw new RequestException($"'{path}' holds raw {format} weights with no architecture: pass --config CONFIG.yaml (the model_params they were trained with)")
            : DdpmConfig.Load(configPath);
    }

    /// <summary>Converts raw weights (<c>.pth</c> or <c>.safetensors</c>) plus a config into a ddpm checkpoint (step
    /// 0).</summary>
    /// <returns>The keys left at their initial values (only with <c>strict: false</c>) and the tensors holding NaN or
    /// ±∞ (only with <paramref name="allowNonFinite"/>).</returns>
    /// <param name="configPath">The file <paramref name="config"/> came from, when it did (checked not to be the
    /// output).</param>
    public static (IReadOnlyList<string> MissingKeys, IReadOnlyList<string> NonFiniteTensors) Import(string weightsPath, DdpmConfig config,
        string checkpointPath, bool strict = true, bool allowNonFinite = false, string? configPath = null)
    {
        TorchSharpPatch.EnsureApplied();
        // The output must never replace the input: not by the same path, a symbolic link or a hard link to it.
        foreach (var (input, option) in new[] { (weightsPath, "--weights"), (configPath, "--config") })
            if (input is not null && FileIdentity.SameFile(input, checkpointPath))
                throw new RequestException($"--out '{checkpointPath}' is the same file as the {option} input; give a new checkpoint path");
        PathCheck.EnsureWritableFile(checkpointPath, "--out");
        if (StateDictIo.Detect(weightsPath) == WeightFormat.Checkpoint)
            throw new RequestException($"'{weightsPath}' is already a ddpm checkpoint; nothing to import");
        using var loaded = Load(weightsPath, config, strict, allowNonFinite);
        if (loaded.Format == WeightFormat.Checkpoint)
            throw new WeightsException(weightsPath, "is already a ddpm checkpoint; nothing to import");
        Checkpoint.Save(checkpointPath, loaded.Model, config, epoch: 0, step: 0);
        return (loaded.MissingKeys, loaded.NonFiniteTensors);
    }

    /// <summary>
    /// Writes a model's weights for PyTorch: exactly the reference's keys and shapes, float32, as <c>.pth</c>
    /// (<c>Unet(config).load_state_dict(torch.load(path))</c>) or <c>.safetensors</c>, chosen by extension.
    /// </summary>
    public static void Export(UNet model, string path)
    {
        TorchSharpPatch.EnsureApplied();
        var stateDict = StateDictIo.Export(model);
        try { StateDictIo.Write(path, stateDict); }
        finally { foreach (var t in stateDict.Values) t.Dispose(); }
    }
}
