using Ddpm.Configuration;
using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// <see cref="ImageGenerator.Plan"/>'s checks of a request's edit (inpainting, image-to-image, interpolation), and the
/// model timesteps each kind visits. Every failure is an <see cref="ArgumentException"/> whose message starts with the
/// kind and names the input and the problem.
/// </summary>
internal static class EditChecks
{
    /// <summary>The model calls of one batch, in order, after checking the request's edit against the model.</summary>
    public static IReadOnlyList<int> Timesteps(GenerationRequest request, NoiseSchedule schedule, long[] imageShape,
        bool conditional, Action<int> checkClass)
    {
        if (request.Kind == "several edits")
            throw Bad("a request is one of sampling, inpainting, image-to-image or interpolation; this one asks for " +
                "several");
        var sampler = request.Sampler.Create(schedule);
        if (request.Inpainting is { } fill) return Inpainting(fill, sampler, request.Sampler.Kind, imageShape);
        if (request.ImageToImage is { } edit)
        {
            if (!(edit.Strength > 0 && edit.Strength <= 1))
                throw Bad($"image-to-image: the strength must lie in (0, 1], got {edit.Strength}");
            CheckImages("image-to-image: the input images", edit.Images, imageShape);
            int start = ImageToImage.StartIndex(edit.Strength, sampler.Timesteps, schedule.T);
            return sampler.Timesteps.Skip(start).ToArray();
        }
        if (request.Interpolation is { } path) Interpolation(path, request, conditional, checkClass);
        return sampler.Timesteps;
    }

    private static IReadOnlyList<int> Inpainting(Inpainting fill, ISampler sampler, SamplerKind kind, long[] imageShape)
    {
        CheckImages("inpainting: the known images", fill.Known, imageShape);
        var mask = fill.Mask;
        long m = fill.Known.shape[0];
        if (mask.dim() != 4 || (mask.shape[0] != 1 && mask.shape[0] != m) || mask.shape[1] != 1
            || mask.shape[2] != imageShape[1] || mask.shape[3] != imageShape[2])
            throw Bad($"inpainting: the mask is {Shape(mask)}; it must be [1 or {m} (the known images), 1, " +
                $"{imageShape[1]}, {imageShape[2]}]");
        using (var scope = NewDisposeScope())
        {
            var values = mask.to(float64);
            if (!values.eq(0).logical_or(values.eq(1)).all().item<bool>())
                throw Bad("inpainting: the mask must hold only 0 (inpaint) and 1 (keep)");
            if (!fill.AllowTrivialMask)
            {
                var kept = values.reshape(mask.shape[0], -1).sum(1).cpu().data<double>().ToArray();
                long pixels = imageShape[1] * imageShape[2];
                for (int i = 0; i < kept.Length; i++)
                {
                    string which = kept.Length == 1 ? "the mask" : $"mask {i}";
                    if (kept[i] == 0)
                        throw Bad($"inpainting: {which} keeps no pixel: nothing to complete from (sample instead)");
                    if (kept[i] == pixels) throw Bad($"inpainting: {which} keeps every pixel: nothing to inpaint");
                }
            }
        }
        if (fill.Resamplings < 1) throw Bad($"inpainting: resamplings must be >= 1, got {fill.Resamplings}");
        if (fill.JumpLength < 1) throw Bad($"inpainting: the jump length must be >= 1, got {fill.JumpLength}");
        int steps = sampler.Timesteps.Count;
        if (fill.Resamplings > 1)
        {
            if (!SamplerOptions.IsSingleStep(kind))
                throw Bad("inpainting: resampling needs a single-step sampler (ddpm or ddim); " +
                    $"{EnumNames.Name(kind)} is a multistep solver whose history of x̂_0 cannot follow a jump back " +
                    "in time");
            if (fill.JumpLength >= steps)
                throw Bad($"inpainting: the jump length {fill.JumpLength} must be below the sampler's {steps} steps");
        }
        var moves = RePaintSchedule.Moves(steps, fill.JumpLength, fill.Resamplings);
        return moves.Select(move => sampler.Timesteps[move.Step]).ToArray();
    }

    private static void Interpolation(Interpolation path, GenerationRequest request, bool conditional,
        Action<int> checkClass)
    {
        if (path.Frames < 2) throw Bad($"interpolation: frames must be >= 2, got {path.Frames}");
        long last = request.FirstIndex + request.Count - 1;
        if (last >= path.Frames)
            throw Bad($"interpolation: images {request.FirstIndex}..{last} asked of a path of {path.Frames} frames");
        if (path.FromIndex < 0 || path.ToIndex < 0)
            throw Bad($"interpolation: image indices must be >= 0, got {path.FromIndex} and {path.ToIndex}");
        if (request.Labels is not null)
            throw Bad("interpolation: give the classes of its ends (FromClass, ToClass), not a label per image");
        if (path.FromClass is null != path.ToClass is null)
            throw Bad("interpolation: give both end classes or neither");
        if (path.FromClass is { } a && path.ToClass is { } b)
        {
            if (!conditional)
                throw Bad("class labels need a class-conditional model (model_params.num_classes > 0); " +
                    "this one is unconditional");
            checkClass(a);
            checkClass(b);
        }
    }

    /// <summary>Input images: [M ≥ 1, C, H, W] as the model's, finite, within [−1, 1].</summary>
    private static void CheckImages(string what, Tensor images, long[] imageShape)
    {
        if (images.dim() != 4 || images.shape[0] < 1 || !images.shape.Skip(1).SequenceEqual(imageShape))
            throw Bad($"{what} are {Shape(images)}; the model makes [{string.Join(", ", imageShape)}] images " +
                $"(channels, height, width), so [M, {string.Join(", ", imageShape)}] is needed");
        if (!images.is_floating_point()) throw Bad($"{what} must be floating point in [-1, 1], got {images.dtype}");
        using var scope = NewDisposeScope();
        var values = images.to(float64);
        if (!values.isfinite().all().item<bool>()) throw Bad($"{what} hold NaN or infinite values");
        double min = values.min().item<double>(), max = values.max().item<double>();
        if (min < -1 || max > 1) throw Bad($"{what} must lie in [-1, 1], got values in [{min:G4}, {max:G4}]");
    }

    private static ArgumentException Bad(string message) => new(message);

    private static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
}
