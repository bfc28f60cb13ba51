using Ddpm.Evaluation;
using Ddpm.Sampling;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

/// <summary>
/// Every sampler on the model that ships in <c>models/</c>, judged by the shipped MNIST classifier: 100 guided images
/// (classes i mod 10, w = 3, 20 steps) must be the requested digits, confidently. A regression in any sampler's
/// arithmetic (a wrong coefficient, a sign, a step order) turns digits into noise or into other digits and fails here.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Slow)]
public sealed class ShippedModelTests(ITestOutputHelper output)
{
    public static string ModelPath => Path.Combine(TestPaths.RepoRoot, "models", "mnist-quick.ckpt");
    public static string ClassifierDir => Path.Combine(TestPaths.RepoRoot, "models", "mnist-classifier");

    // Measured (2026-12-06): every sampler 100 % agreement and 100 % confident; the bounds leave room for libtorch's
    // rounding on other CPUs, not for a broken sampler (which lands near 10 % agreement).
    [Theory]
    [InlineData(SamplerKind.DpmSolver2MSde, 0.95, 0.9)] // the default
    [InlineData(SamplerKind.Ddpm, 0.95, 0.9)]           // respaced to 20 steps
    [InlineData(SamplerKind.Ddim, 0.95, 0.9)]
    [InlineData(SamplerKind.DpmSolver2M, 0.95, 0.9)]
    [InlineData(SamplerKind.UniPc, 0.95, 0.9)]
    public void The_shipped_model_draws_the_requested_digits_with_every_sampler(SamplerKind kind, double minAgreement, double minConfidence)
    {
        using var generator = ImageGenerator.Load(ModelPath);
        var request = new GenerationRequest
        {
            Count = 100, Seed = 0, Labels = GenerationRequest.CyclingClasses(100, 10), Guidance = 3,
            Sampler = new SamplerOptions { Kind = kind, Steps = 20, ClipX0 = true },
        };
        using var result = generator.Generate(request);
        var (classifier, _) = new ClassifierStore(ClassifierDir).Load();
        using (classifier)
        using (var outputs = classifier.Embed(result.Images))
        {
            var predicted = outputs.Probabilities.argmax(1).data<long>().ToArray();
            var top = outputs.Probabilities.max(1).values.data<double>().ToArray();
            double agreement = predicted.Where((y, i) => y == request.Labels[i]).Count() / 100.0;
            double confident = top.Count(p => p >= 0.9) / 100.0;
            output.WriteLine($"{kind}: class agreement {agreement:P0}, confidence >= 0.9 {confident:P0}");
            Assert.True(agreement >= minAgreement, $"{kind}: {agreement:P0} of the digits are the requested class");
            Assert.True(confident >= minConfidence, $"{kind}: {confident:P0} of the digits are classified with confidence >= 0.9");
        }
    }
}
