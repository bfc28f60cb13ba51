namespace Ddpm.Cli.Commands;

/// <summary>
/// The commands that generate into a folder (<see cref="GenerationOptionSet"/>). Under <c>mpirun -n R</c> each rank
/// makes its range of image indices; rank 0 alone writes and reports (<see cref="Runs.SampleRun"/>).
/// </summary>
internal static class GenerationCommands
{
    /// <summary>
    /// <c>ddpm sample</c>: a PNG grid and an animated reverse process, by DPM-Solver++(2M) SDE in 20 steps unless
    /// <c>--sampler</c> says otherwise (<c>ddpm</c>: Algorithm 2); with <c>--init</c>, image-to-image (SDEdit).
    /// </summary>
    public static Command Sample()
    {
        var options = new GenerationOptionSet();
        var init = Opt<string?>("--init", "image-to-image (SDEdit): start from this image, or a folder of them (PNG/JPEG at the model's size; image i from input i mod M)");
        var strength = Opt<double?>("--strength", "with --init: the share s in (0, 1] of the chain run again from the noised input (default 0.5; 1 = from noise)");
        return Cmd("sample", "Generate images from a checkpoint (default DPM-Solver++(2M) SDE in 20 steps; Algorithm 2, DDIM, respaced DDPM, DPM-Solver++, UniPC; guidance)",
            [init, strength, .. options.All], p =>
        {
            if (p.GetValue(init) is null && p.GetValue(strength) is not null) throw new UsageException("--strength applies to image-to-image: give --init IMG");
            using var generator = options.Load(p);
            var request = options.Request(p, generator);
            using var images = p.GetValue(init) is { } path ? GenerationOptionSet.Images("--init", path, generator) : null;
            if (images is not null) request = request with { ImageToImage = new ImageToImage { Images = images, Strength = p.GetValue(strength) ?? 0.5 } };
            return options.Run(p, generator, request, images is null ? "sampled" : "cleaned up");
        });
    }

    /// <summary>
    /// <c>ddpm inpaint</c>: complete images where a mask is black (RePaint), keeping them where it is white. Image i of
    /// <c>--num</c> completes input i mod M, so with M images a row each grid column holds one input's completions.
    /// </summary>
    public static Command Inpaint()
    {
        var options = new GenerationOptionSet(defaultOut: "inpainted");
        var image = Opt<string>("--image", "the known image, or a folder of them (PNG/JPEG at the model's size)", required: true);
        var mask = Opt<string>("--mask", "mask PNG (white = keep, black = complete), one for all images or a folder with one per image", required: true);
        var resample = Opt("--resample", "RePaint's resamplings r: walk each stretch of --jump steps r times (1 = plain replacement; r > 1 needs --sampler ddpm or ddim)", 1);
        var jump = Opt("--jump", "RePaint's jump length j in steps of the sampler's grid", 10);
        return Cmd("inpaint", "Complete the black part of a mask (RePaint, with --resample R --jump J); --num defaults to one per input",
            [image, mask, resample, jump, .. options.All], p =>
        {
            using var generator = options.Load(p);
            using var known = GenerationOptionSet.Images("--image", p.GetValue(image)!, generator);
            using var keep = GenerationOptionSet.Images("--mask", p.GetValue(mask)!, generator, masks: true);
            int inputs = (int)known.shape[0];
            var request = options.Request(p, generator, defaultCount: inputs, cycleClasses: false) with
            {
                Inpainting = new Inpainting { Known = known, Mask = keep, Resamplings = p.GetValue(resample), JumpLength = p.GetValue(jump) },
            };
            return options.Run(p, generator, request, "inpainted", defaultRows: Math.Min(inputs, request.Count));
        });
    }

    /// <summary>
    /// <c>ddpm interpolate</c>: <c>--num</c> frames from one seed's sample to another's (a slerp of their noise), as a
    /// one-row grid and an animated path. A deterministic sampler (the default, DDIM η = 0) is smoothest.
    /// </summary>
    public static Command Interpolate()
    {
        var options = new GenerationOptionSet(SamplerKind.Ddim, "interpolation");
        var seeds = Opt<string>("--seeds", "the two ends' seeds, A,B (image 0 of each unless --indices)", required: true);
        var indices = Opt<string?>("--indices", "image indices of the ends in their seeds' sequences, I,J (default 0,0)");
        var classes = Opt<string?>("--classes", "classes of the ends for a class-conditional model, a,b (their ε mixed along the path)");
        return Cmd("interpolate", "Frames between two seeds' samples (--num of them, ends included): a slerp of their noise",
            [seeds, indices, classes, .. options.All], p =>
        {
            var (a, b) = Pair<long>("--seeds", p.GetValue(seeds)!);
            var (i, j) = p.GetValue(indices) is { } text ? Pair<long>("--indices", text) : (0, 0);
            (int, int)? ends = p.GetValue(classes) is { } c ? Pair<int>("--classes", c) : null;
            using var generator = options.Load(p);
            var request = options.Request(p, generator, defaultCount: 8) with { Seed = a, Labels = null };
            var path = new Interpolation { Frames = request.Count, FromIndex = i, ToSeed = b, ToIndex = j, FromClass = ends?.Item1, ToClass = ends?.Item2 };
            return options.Run(p, generator, request with { Interpolation = path }, "interpolated", defaultRows: request.Count);
        });
    }

    /// <summary>"X,Y" as two values; anything else is a usage error naming the option.</summary>
    private static (T, T) Pair<T>(string option, string text) where T : IParsable<T>
    {
        var parts = text.Split(',');
        return parts.Length == 2 && T.TryParse(parts[0].Trim(), CultureInfo.InvariantCulture, out var a) && T.TryParse(parts[1].Trim(), CultureInfo.InvariantCulture, out var b)
            ? (a, b) : throw new UsageException($"{option}: expected two integers separated by a comma, got '{text}'");
    }
}
