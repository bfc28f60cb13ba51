using System.CommandLine;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm inpaint</c>: complete images where a mask is black (RePaint), keeping them where it is white. Inputs are an
/// image or a folder of them at the model's size; image i of <c>--num</c> completes input i mod M, so each grid column
/// (M a row) holds one input's completions.
/// </summary>
internal static class InpaintCommand
{
    public static Command Create()
    {
        var options = new EditOptions(SamplerOptions.RecommendedKind, "inpainted");
        var image = new Option<string>("--image")
        {
            Description = "the known image, or a folder of them (PNG/JPEG at the model's size)",
            Required = true,
        };
        var mask = new Option<string>("--mask")
        {
            Description = "mask PNG (white = keep, black = inpaint; one for every image) or a folder with one mask " +
                "per image",
            Required = true,
        };
        var num = new Option<int?>("--num")
        {
            Description = "completions in all (default: one per input image); image i completes input i mod M",
        };
        var rows = new Option<int?>("--grid-rows")
        {
            Description = "images per grid row (default: the number of inputs)",
        };
        var label = new Option<int?>("--class")
        {
            Description = "class label for a class-conditional model (needed for --guidance)",
        };
        var resample = new Option<int>("--resample")
        {
            Description = "RePaint's resamplings r: walk each stretch of --jump steps r times (1 = plain " +
                "replacement; r > 1 needs --sampler ddpm or ddim)",
            DefaultValueFactory = _ => 1,
        };
        var jump = new Option<int>("--jump")
        {
            Description = "RePaint's jump length j in steps of the sampler's grid",
            DefaultValueFactory = _ => 10,
        };
        var frames = new Option<int>("--frames")
        {
            Description = "frames of the animated reverse process (reverse.png, APNG; 0 = none)",
            DefaultValueFactory = _ => 50,
        };
        var cmd = new Command("inpaint", "Complete the black part of a mask (RePaint, with --resample R --jump J)")
        {
            image, mask, num, rows, label, resample, jump, frames,
        };
        options.AddTo(cmd);
        cmd.SetAction(p =>
        {
            using var generator = options.Load(p);
            using var known = EditOptions.Images("--image", p.GetValue(image)!, generator);
            using var keep = EditOptions.Images("--mask", p.GetValue(mask)!, generator, masks: true);
            int inputs = (int)known.shape[0], n = p.GetValue(num) ?? inputs;
            if (keep.shape[0] != 1 && keep.shape[0] != inputs)
                throw new UsageException($"--mask: {keep.shape[0]} masks for {inputs} images (one, or one per image)");
            var request = new GenerationRequest
            {
                Count = n,
                Seed = options.Seed(p),
                Sampler = options.Sampler(p),
                Labels = p.GetValue(label) is { } y ? Enumerable.Repeat(y, n).ToArray() : null,
                Guidance = options.Guidance(p),
                MaxBatchSize = options.BatchSize(p),
                Inpainting = new Inpainting
                {
                    Known = known, Mask = keep, Resamplings = p.GetValue(resample), JumpLength = p.GetValue(jump),
                },
            };
            int perRow = p.GetValue(rows) ?? Math.Min(inputs, n);
            return options.Run(p, generator, request, "inpainted.png", perRow, p.GetValue(frames));
        });
        return cmd;
    }
}
