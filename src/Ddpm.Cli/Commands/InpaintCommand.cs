using System.CommandLine;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm inpaint</c>: complete images where a mask is black (RePaint), keeping them where it is white. Image i of
/// <c>--num</c> completes input i mod M, so with M images a row each grid column holds one input's completions.
/// </summary>
internal static class InpaintCommand
{
    public static Command Create()
    {
        var options = new GenerationOptionSet(defaultOut: "inpainted");
        var image = new Option<string>("--image") { Description = "the known image, or a folder of them (PNG/JPEG at the model's size)", Required = true };
        var mask = new Option<string>("--mask") { Description = "mask PNG (white = keep, black = complete), one for all images or a folder with one per image", Required = true };
        var resample = new Option<int>("--resample") { Description = "RePaint's resamplings r: walk each stretch of --jump steps r times (1 = plain replacement; r > 1 needs --sampler ddpm or ddim)", DefaultValueFactory = _ => 1 };
        var jump = new Option<int>("--jump") { Description = "RePaint's jump length j in steps of the sampler's grid", DefaultValueFactory = _ => 10 };
        var cmd = new Command("inpaint", "Complete the black part of a mask (RePaint, with --resample R --jump J); --num defaults to one per input") { image, mask, resample, jump };
        options.AddTo(cmd);
        cmd.SetAction(p =>
        {
            using var generator = options.Load(p);
            using var known = GenerationOptionSet.Images("--image", p.GetValue(image)!, generator);
            using var keep = GenerationOptionSet.Images("--mask", p.GetValue(mask)!, generator, masks: true);
            int inputs = (int)known.shape[0];
            var request = options.Request(p, generator, defaultCount: inputs, cycleClasses: false) with
            {
                Inpainting = new Inpainting { Known = known, Mask = keep, Resamplings = p.GetValue(resample), JumpLength = p.GetValue(jump) },
            };
            return options.Run(p, options.Plan(p, generator, request, defaultRows: Math.Min(inputs, request.Count)), "inpainted");
        });
        return cmd;
    }
}
