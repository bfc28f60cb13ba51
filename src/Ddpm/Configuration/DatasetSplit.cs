namespace Ddpm.Configuration;

/// <summary>Which part of a built-in dataset to read (the <c>split</c> key); image folders have no split.</summary>
public enum DatasetSplit
{
    /// <summary>MNIST's 60,000 training images, CIFAR-10's <c>data_batch_1..5.bin</c>.</summary>
    Train,
    /// <summary>MNIST's 10,000 <c>t10k</c> images, CIFAR-10's <c>test_batch.bin</c>.</summary>
    Test,
}
