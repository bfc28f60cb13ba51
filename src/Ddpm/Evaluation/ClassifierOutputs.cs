using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>What the classifier says about N images: penultimate features φ(x) [N, D] and p(y|x) [N, 10], float64,
/// CPU.</summary>
public sealed record ClassifierOutputs(Tensor Features, Tensor Probabilities) : IDisposable
{
    public long Count => Features.shape[0];

    public void Dispose()
    {
        Features.Dispose();
        Probabilities.Dispose();
    }
}
