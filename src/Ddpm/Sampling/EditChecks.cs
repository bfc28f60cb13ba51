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
    public static IReadOnlyList<int> Timesteps(GenerationRequest request, NoiseSchedule schedule, long[] imageShape, bool conditional,
        Action<int> checkClass)
    {
        if (request.Kind == "several edits")
            throw new ArgumentException("a request is one of sampling, inpainting, image-to-image or interpolation; this one asks for several", nameof(request));
        var sampler = request.Sampler.Create(schedule);
        if (request.Inpainting is { } fill) return Inpainting(fill, sampler, request.Sampler.Kind, imageShape);
        if (request.ImageToImage is { } edit)
        {
            if (!(edit.Strength > 0 && edit.Strength <= 1))
                throw new ArgumentException($"image-to-image: the strength must lie in (0, 1], got {edit.Strength}", nameof(request));
            CheckImages("image-to-image: the input images", edit.Images, imageShape);
            return sampler.Timesteps.Skip(ImageToImage.StartIndex(edit.Strength, sampler.Timesteps, schedule.T)).ToArray();
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
            throw new ArgumentException($"inpainting: the mask is {Shape(mask)}; it must be [1 or {m} (the known images), 1, " +
                $"{imageShape[1]}, {imageShape[2]}]", nameof(fill));
        using (var scope = NewDisposeScope())
        {
            var values = mask.to(float64);
            if (!values.eq(0).logical_or(values.eq(1)).all().item<bool>())
                throw new ArgumentException("inpainting: the mask must hold only 0 (inpaint) and 1 (keep)", nameof(fill));
            if (!fill.AllowTrivialMask)
            {
                var kept = values.reshape(mask.shape[0], -1).sum(1).cpu().data<double>().ToArray();
                long pixels = imageShape[1] * imageShape[2];
                for (int i = 0; i < kept.Length; i++)
                {
                    string which = kept.Length == 1 ? "the mask" : $"mask {i}";
                    if (kept[i] == 0) throw new ArgumentException($"inpainting: {which} keeps no pixel: nothing to complete from (sample instead)", nameof(fill));
                    if (kept[i] == pixels) throw new ArgumentException($"inpainting: {which} keeps every pixel: nothing to inpaint", nameof(fill));
                }
            }
        }
        if (fill.Resamplings < 1) throw new ArgumentException($"inpainting: resamplings must be >= 1, got {fill.Resamplings}", nameof(fill));
        if (fill.JumpLength < 1) throw new ArgumentException($"inpainting: the jump length must be >= 1, got {fill.JumpLength}", nameof(fill));
        int steps = sampler.Timesteps.Count;
        if (fill.Resamplings > 1)
        {
            if (!SamplerOptions.IsSingleStep(kind))
                throw new ArgumentException($"inpainting: resampling needs a single-step sampler (ddpm or ddim); {Configuration.EnumNames.Name(kind)} " +
                    "is a multistep solver whose history of x̂_0 cannot follow a jump back in time", nameof(fill));
            if (fill.JumpLength >= steps)
                throw new ArgumentException($"inpainting: the jump length {fill.JumpLength} must be below the sampler's {steps} steps", nameof(fill));
        }
        return RePaintSchedule.Moves(steps, fill.JumpLength, fill.Resamplings).Select(move => sampler.Timesteps[move.Step]).ToArray();
    }

    private static void Interpolation(Interpolation path, GenerationRequest request, bool conditional, Action<int> checkClass)
    {
        if (path.Frames < 2) throw new ArgumentException($"interpolation: frames must be >= 2, got {path.Frames}", nameof(request));
        if (request.FirstIndex + request.Count > path.Frames)
            throw new ArgumentException($"interpolation: images {request.FirstIndex}..{request.FirstIndex + request.Count - 1} asked of a path of " +
                $"{path.Frames} frames", nameof(request));
        if (path.FromIndex < 0 || path.ToIndex < 0)
            throw new ArgumentException($"interpolation: image indices must be >= 0, got {path.FromIndex} and {path.ToIndex}", nameof(request));
        if (request.Labels is not null)
            throw new ArgumentException("interpolation: give the classes of its ends (FromClass, ToClass), not a label per image", nameof(request));
        if (path.FromClass is null != path.ToClass is null)
            throw new ArgumentException("interpolation: give both end classes or neither", nameof(request));
        if (path.FromClass is { } a && path.ToClass is { } b)
        {
            if (!conditional)
                throw new ArgumentException("class labels need a class-conditional model (model_params.num_classes > 0); this one is unconditional", nameof(request));
            checkClass(a);
            checkClass(b);
        }
    }

    /// <summary>Input images: [M ≥ 1, C, H, W] as the model's, finite, within [−1, 1].</summary>
    private static void CheckImages(string what, Tensor images, long[] imageShape)
    {
        if (images.dim() != 4 || images.shape[0] < 1 || !images.shape.Skip(1).SequenceEqual(imageShape))
            throw new ArgumentException($"{what} are {Shape(images)}; the model makes [{string.Join(", ", imageShape)}] images " +
                $"(channels, height, width), so [M, {string.Join(", ", imageShape)}] is needed");
        if (!images.is_floating_point()) throw new ArgumentException($"{what} must be floating point in [-1, 1], got {images.dtype}");
        using var scope = NewDisposeScope();
        var values = images.to(float64);
        if (!values.isfinite().all().item<bool>()) throw new ArgumentException($"{what} hold NaN or infinite values");
        double min = values.min().item<double>(), max = values.max().item<double>();
        if (min < -1 || max > 1) throw new ArgumentException($"{what} must lie in [-1, 1], got values in [{min:G4}, {max:G4}]");
    }

    private static string Shape(Tensor t) => $"[{string.Join(", ", t.shape)}]";
}
