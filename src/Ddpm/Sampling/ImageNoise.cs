using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// The Gaussian noise of a generation, defined per image: image i of a seed has its own CPU random stream, seeded from
/// (seed, i) alone, whose first draw is its x_T and whose next draws are its step noise, <see cref="StepsPerDraw"/>
/// steps at a time. So image i is the same whether it is generated alone, in any batch, by any process of a sharded
/// run, or on any device (everything is drawn on the CPU, then copied).
/// </summary>
/// <remarks>
/// Step s of image i is element s mod K of the stream's draw number 1 + s / K (K = <see cref="StepsPerDraw"/>), whether
/// or not the sampler uses noise at s. Drawing K steps at once keeps the per-image calls, and the host-to-device
/// copies, to one per K steps. libtorch's CPU generator (mt19937) keeps 32 bits of a seed, so the stream seed is a
/// 64-bit mix of (seed, i) folded to 32 bits (<see cref="StreamSeed"/>).
/// </remarks>
public sealed class ImageNoise : IDisposable
{
    /// <summary>Steps of noise per draw of a stream: part of the streams' definition (changing it changes the
    /// images).</summary>
    public const int StepsPerDraw = 10;

    private readonly Generator[] _streams;
    private readonly long[] _imageShape;
    private readonly Device _device;
    private bool _initialDrawn;
    private int _blockIndex = -1;
    private Tensor? _block;

    /// <summary>Noise for images <paramref name="firstIndex"/> … <paramref name="firstIndex"/> +
    /// <paramref name="count"/> − 1 of <paramref name="seed"/>, each of <paramref name="imageShape"/> [C, H, W],
    /// delivered on <paramref name="device"/>.</summary>
    public ImageNoise(long seed, long firstIndex, int count, long[] imageShape, Device device)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), $"count must be >= 1, got {count}");
        if (firstIndex < 0) throw new ArgumentOutOfRangeException(nameof(firstIndex), $"the first image index must be >= 0, got {firstIndex}");
        Seed = seed;
        FirstIndex = firstIndex;
        Count = count;
        _imageShape = imageShape.ToArray();
        _device = device;
        _streams = new Generator[count];
        for (int j = 0; j < count; j++) _streams[j] = new Generator(StreamSeed(seed, firstIndex + j), new Device("cpu"));
    }

    public long Seed { get; }
    public long FirstIndex { get; }
    public int Count { get; }

    /// <summary>The seed of image <paramref name="index"/>'s stream: SplitMix64 of (seed, index), folded to 32
    /// bits.</summary>
    public static ulong StreamSeed(long seed, long index)
    {
        ulong h = SplitMix64(SplitMix64((ulong)seed) ^ (ulong)index);
        return (h ^ (h >> 32)) & 0xFFFF_FFFFUL;
    }

    private static ulong SplitMix64(ulong z)
    {
        z += 0x9E37_79B9_7F4A_7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>x_T ~ N(0, I), [Count, C, H, W] float32 on the device: each stream's first draw. Call once, before any
    /// step; the caller owns it.</summary>
    public Tensor Initial()
    {
        if (_initialDrawn) throw new InvalidOperationException("x_T has been drawn already: it is each stream's first draw");
        _initialDrawn = true;
        using var scope = NewDisposeScope();
        var x = Draw([]);
        return OnDevice(x).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// z ~ N(0, I) for step <paramref name="step"/>, [Count, C, H, W] on the device (a view into the current block:
    /// valid until a later block is drawn or this is disposed). Steps must not go backwards past a block.
    /// </summary>
    public Tensor ForStep(int step)
    {
        if (!_initialDrawn) throw new InvalidOperationException("draw x_T (Initial) before any step noise: it is each stream's first draw");
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), $"step must be >= 0, got {step}");
        int block = step / StepsPerDraw;
        if (block < _blockIndex) throw new InvalidOperationException($"step {step} lies in a block already passed (the streams only go forward)");
        while (_blockIndex < block)
        {
            _block?.Dispose();
            _block = null;
            using var scope = NewDisposeScope();
            var drawn = Draw([StepsPerDraw]);
            _block = OnDevice(drawn).DetachFromDisposeScope();
            _blockIndex++;
        }
        return _block!.select(1, step % StepsPerDraw);
    }

    /// <summary>One draw of every stream into a CPU tensor [Count, ..<paramref name="perImage"/>, C, H, W].</summary>
    private Tensor Draw(long[] perImage)
    {
        var shape = new long[] { Count }.Concat(perImage).Concat(_imageShape).ToArray();
        var buffer = empty(shape, dtype: float32);
        for (int j = 0; j < Count; j++)
        {
            using var row = buffer[j];
            row.normal_(generator: _streams[j]);
        }
        return buffer;
    }

    private Tensor OnDevice(Tensor cpu) => _device.type == DeviceType.CPU ? cpu : cpu.to(_device);

    public void Dispose()
    {
        _block?.Dispose();
        _block = null;
        foreach (var g in _streams) g.Dispose();
    }
}
