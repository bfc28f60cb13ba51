using Ddpm.Data;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// What evaluated images are measured against: the MNIST classifier, the labelled real training and test sets, the
/// anchors, and the test set's feature statistics. Owns (disposes) all of them.
/// </summary>
public sealed class EvaluationReference(MnistClassifier classifier, ClassifierInfo info, string classifierPath, ImageDataset train,
    ImageDataset test, QualityAnchors anchors) : IDisposable
{
    private FeatureStatistics? _testStatistics;

    public MnistClassifier Classifier => classifier;
    public ClassifierInfo Info => info;
    public string ClassifierPath => classifierPath;
    public ImageDataset Train => train;
    public ImageDataset Test => test;
    public QualityAnchors Anchors => anchors;

    /// <summary>Mean and covariance of the test set's classifier features (computed once).</summary>
    public FeatureStatistics TestStatistics
    {
        get
        {
            if (_testStatistics is null)
            {
                using var outputs = Classifier.Embed(Test.Images);
                _testStatistics = FeatureStatistics.FromFeatures(outputs.Features, Test.Description);
            }
            return _testStatistics;
        }
    }

    /// <summary>
    /// The MNIST reference cached in <paramref name="dataDir"/>: MNIST fetched if missing, the classifier trained once,
    /// the anchors computed once (again when the classifier changed).
    /// </summary>
    public static EvaluationReference Load(string dataDir, Action<string>? log = null, CancellationToken cancel = default)
    {
        var store = new ClassifierStore(dataDir);
        var source = new MnistSource { Log = log };
        var (classifier, info) = store.EnsureAsync(source, log: log, cancel: cancel).GetAwaiter().GetResult();
        ImageDataset? train = null, test = null;
        try
        {
            (train, test) = store.LoadMnistAsync(source, cancel).GetAwaiter().GetResult();
            var anchors = store.LoadAnchors();
            if (anchors is null || anchors.ClassifierTrainedAt != info.TrainedAt)
            {
                anchors = QualityAnchors.Compute(classifier, info, train, test, 0, log);
                store.SaveAnchors(anchors);
            }
            return new EvaluationReference(classifier, info, store.WeightsPath, train, test, anchors);
        }
        catch
        {
            classifier.Dispose();
            train?.Dispose();
            test?.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        _testStatistics?.Dispose();
        Classifier.Dispose();
        Train.Dispose();
        Test.Dispose();
    }
}
