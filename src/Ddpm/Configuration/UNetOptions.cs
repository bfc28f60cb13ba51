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
    /// <summary>
    /// Which resolution levels (one entry per <c>down_sample</c> entry: down block i and its mirrored up block) have
    /// self-attention layers; null = every level, as the seed. The mid blocks always keep theirs.
    /// </summary>
    public IReadOnlyList<bool>? AttentionLevels { get; init; }

    /// <summary>Whether down block <paramref name="level"/> and its mirrored up block have self-attention.</summary>
    public bool HasAttention(int level) => AttentionLevels is null || AttentionLevels[level];

    /// <summary>GroupNorm groups, fixed at 8 by the reference.</summary>
    public const int Groups = 8;

    /// <summary>Channels of the last up block and of <c>norm_out</c>, fixed at 16 by the reference.</summary>
    public const int OutChannels = 16;

    /// <summary>Throws <see cref="ConfigException"/> naming the first offending key
    /// (<see cref="ConfigSchema.Model"/>).</summary>
    public void Validate() => ConfigSchema.Model.Validate(this);
}
