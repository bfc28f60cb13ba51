using System.CommandLine;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm sample --init IMG --strength S</c>: image-to-image (SDEdit) from an image or a folder of them; image i
/// starts from input i mod M noised to t_0 = S·T on the sampler's grid. Declared here so that <c>sample</c> only adds
/// and applies it.
/// </summary>
internal sealed class InitImageOptions
{
    private readonly Option<string?> _init = new("--init")
    {
        Description = "image-to-image (SDEdit): start from this image, or a folder of them (PNG/JPEG at the model's " +
            "size; image i from input i mod M)",
    };
    private readonly Option<double?> _strength = new("--strength")
    {
        Description = "with --init: strength s in (0, 1], the share of the chain run again from the noised input " +
            "(default 0.5; 1 = from noise)",
    };

    public void AddTo(Command command)
    {
        command.Add(_init);
        command.Add(_strength);
    }

    /// <summary>The path and strength given, or null without --init (--strength alone is a usage error).</summary>
    public (string Path, double Strength)? Read(ParseResult p)
    {
        var strength = p.GetValue(_strength);
        if (p.GetValue(_init) is not { } path)
            return strength is null ? null
                : throw new UsageException("--strength applies to image-to-image: give --init IMG");
        return (path, strength ?? 0.5);
    }

    /// <summary><paramref name="request"/> starting from the --init images (read at the model's size), or as it is
    /// without --init.</summary>
    public static GenerationRequest Apply((string Path, double Strength)? init, GenerationRequest request,
        ImageGenerator generator)
    {
        if (init is not { } i) return request;
        var images = EditOptions.Images("--init", i.Path, generator);
        return request with { ImageToImage = new ImageToImage { Images = images, Strength = i.Strength } };
    }
}
