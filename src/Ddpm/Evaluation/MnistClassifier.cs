using Ddpm.Runtime;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// A LeNet-5-like MNIST classifier (LeCun et al. 1998, widened): conv 5×5 (1→32, pad 2) → ReLU → max-pool 2 →
/// conv 5×5 (32→64) → ReLU → max-pool 2 → fc 1600→120 → ReLU → fc 120→84 → ReLU → fc 84→10.
/// Input: [B, 1, 28, 28] in [−1, 1] (the diffusion model's pixel range). The 84 ReLU outputs before the last layer are
/// the features the Fréchet distance is computed on (the role Inception's pool3 plays in FID).
/// </summary>
public sealed class MnistClassifier : nn.Module<Tensor, Tensor>
{
    /// <summary>Width of the penultimate layer: the feature dimension D.</summary>
    public const int FeatureDim = 84;
    /// <summary>Number of classes (digits 0–9).</summary>
    public const int Classes = 10;
    /// <summary>Input side length.</summary>
    public const int ImageSize = 28;

    private readonly Conv2d conv1;
    private readonly Conv2d conv2;
    private readonly Linear fc1;
    private readonly Linear fc2;
    private readonly Linear fc3;

    public MnistClassifier() : base(nameof(MnistClassifier))
    {
        TorchSharpPatch.EnsureApplied();
        Runtime.DevicePolicy.EnsureApplied();
        conv1 = nn.Conv2d(1, 32, 5, padding: 2);
        conv2 = nn.Conv2d(32, 64, 5);
        fc1 = nn.Linear(64 * 5 * 5, 120);
        fc2 = nn.Linear(120, FeatureDim);
        fc3 = nn.Linear(FeatureDim, Classes);
        RegisterComponents();
    }

    /// <summary>The penultimate activations φ(x): [B, 1, 28, 28] → [B, 84].</summary>
    public Tensor Features(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = nn.functional.max_pool2d(nn.functional.relu(conv1.forward(x)), 2);
        h = nn.functional.max_pool2d(nn.functional.relu(conv2.forward(h)), 2);
        h = nn.functional.relu(fc1.forward(h.flatten(1)));
        return nn.functional.relu(fc2.forward(h)).MoveToOuterDisposeScope();
    }

    /// <summary>Class logits from features: [B, 84] → [B, 10].</summary>
    public Tensor Logits(Tensor features) => fc3.forward(features);

    /// <summary>Class logits: [B, 1, 28, 28] → [B, 10].</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return Logits(Features(x)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Features φ(x) and class probabilities p(y|x) = softmax(logits) of every image, in float64 on the CPU, evaluated
    /// in eval mode under no_grad, <paramref name="batchSize"/> images at a time. <paramref name="images"/>: float [N,
    /// 1, 28, 28] in [−1, 1], or uint8 0..255 (mapped to 2·x/255 − 1 batch by batch, so a whole uint8 set never exists
    /// as floats).
    /// </summary>
    public ClassifierOutputs Embed(Tensor images, int batchSize = 500)
    {
        TorchSharpPatch.EnsureApplied();
        CheckImages(images.shape, "images");
        eval();
        using var noGrad = no_grad();
        var device = parameters().First().device;
        long n = images.shape[0];
        var features = new List<Tensor>();
        var probs = new List<Tensor>();
        try
        {
            for (long start = 0; start < n; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var x = images.narrow(0, start, Math.Min(batchSize, n - start));
                x = x.dtype == ScalarType.Byte ? x.to(float32).div(127.5).sub(1.0) : x.to(float32);
                x = x.to(device);
                var f = Features(x);
                var p = nn.functional.softmax(Logits(f).to(float64), 1);
                features.Add(f.to(float64).cpu().MoveToOuterDisposeScope());
                probs.Add(p.cpu().MoveToOuterDisposeScope());
                NativeGarbage.CollectIfDue();
            }
            return new ClassifierOutputs(cat(features, 0), cat(probs, 0));
        }
        finally
        {
            foreach (var t in features.Concat(probs)) t.Dispose();
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="shape"/> is [N, 1, 28, 28].</summary>
    public static void CheckImages(long[] shape, string what)
    {
        if (shape.Length != 4 || shape[1] != 1 || shape[2] != ImageSize || shape[3] != ImageSize)
            throw new ArgumentException($"{what}: the MNIST classifier needs 1-channel 28×28 images [N, 1, 28, 28], got [{string.Join(", ", shape)}]");
    }
}
