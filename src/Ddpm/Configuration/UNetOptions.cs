namespace Ddpm.Configuration;

/// <summary>
/// The U-Net of the seed (explainingai-code/DDPM-Pytorch <c>models/unet_base.py</c>), in the reference's
/// <c>model_params</c> keys. The defaults are the reference's <c>config/default.yaml</c> (10,188,081 parameters).
/// </summary>
public sealed record UNetOptions
{
    public int ImChannels { get; init; } = 1;
    public int ImSize { get; init; } = 28;
    public IReadOnlyList<int> DownChannels { get; init; } = [32, 64, 128, 256];
    public IReadOnlyList<int> MidChannels { get; init; } = [256, 256, 128];
    public IReadOnlyList<bool> DownSample { get; init; } = [true, true, false];
    public int TimeEmbDim { get; init; } = 128;
    public int NumDownLayers { get; init; } = 2;
    public int NumMidLayers { get; init; } = 2;
    public int NumUpLayers { get; init; } = 2;
    public int NumHeads { get; init; } = 4;
    /// <summary>Number of classes for class-conditional training (0 = unconditional, the seed's model).</summary>
    public int NumClasses { get; init; } = 0;

    /// <summary>GroupNorm groups, fixed at 8 by the reference.</summary>
    public const int Groups = 8;

    /// <summary>Channels of the last up block and of <c>norm_out</c>, fixed at 16 by the reference.</summary>
    public const int OutChannels = 16;

    /// <summary>Throws <see cref="ConfigException"/> naming the first offending key.</summary>
    public void Validate()
    {
        const string p = "model_params.";
        if (ImChannels < 1) throw new ConfigException(p + "im_channels", $"must be >= 1, got {ImChannels}");
        if (ImSize < 1) throw new ConfigException(p + "im_size", $"must be >= 1, got {ImSize}");
        if (DownChannels.Count < 2) throw new ConfigException(p + "down_channels", "needs at least 2 entries");
        if (MidChannels.Count < 2) throw new ConfigException(p + "mid_channels", "needs at least 2 entries");
        foreach (var c in DownChannels)
            if (c <= 0 || c % Groups != 0)
                throw new ConfigException(p + "down_channels", $"{c} is not a positive multiple of the {Groups} GroupNorm groups");
        foreach (var c in MidChannels)
            if (c <= 0 || c % Groups != 0)
                throw new ConfigException(p + "mid_channels", $"{c} is not a positive multiple of the {Groups} GroupNorm groups");
        if (DownSample.Count != DownChannels.Count - 1)
            throw new ConfigException(p + "down_sample",
                $"has {DownSample.Count} entries but len(down_channels) - 1 = {DownChannels.Count - 1}");
        if (MidChannels[0] != DownChannels[^1])
            throw new ConfigException(p + "mid_channels",
                $"mid_channels[0] = {MidChannels[0]} must equal down_channels[-1] = {DownChannels[^1]}");
        if (MidChannels[^1] != DownChannels[^2])
            throw new ConfigException(p + "mid_channels",
                $"mid_channels[-1] = {MidChannels[^1]} must equal down_channels[-2] = {DownChannels[^2]}");
        if (NumHeads < 1) throw new ConfigException(p + "num_heads", $"must be >= 1, got {NumHeads}");
        foreach (var c in DownChannels.Skip(1).Concat(MidChannels).Append(OutChannels))
            if (c % NumHeads != 0)
                throw new ConfigException(p + "num_heads", $"{NumHeads} heads do not divide an attention width of {c} channels");
        if (TimeEmbDim < 2 || TimeEmbDim % 2 != 0)
            throw new ConfigException(p + "time_emb_dim", $"must be a positive even number, got {TimeEmbDim}");
        if (NumDownLayers < 1) throw new ConfigException(p + "num_down_layers", $"must be >= 1, got {NumDownLayers}");
        if (NumMidLayers < 1) throw new ConfigException(p + "num_mid_layers", $"must be >= 1, got {NumMidLayers}");
        if (NumUpLayers < 1) throw new ConfigException(p + "num_up_layers", $"must be >= 1, got {NumUpLayers}");
        if (NumClasses < 0) throw new ConfigException(p + "num_classes", $"must be >= 0 (0 = unconditional), got {NumClasses}");
        int factor = 1 << DownSample.Count(d => d);
        if (ImSize % factor != 0)
            throw new ConfigException(p + "im_size", $"{ImSize} is not divisible by 2^{DownSample.Count(d => d)} = {factor} (one halving per down_sample)");
    }
}
