using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Sampling;

namespace Ddpm.Tests.Configuration;

public class EnumNamesTests
{
    [Fact]
    public void A_members_spelling_is_its_name_in_lower_kebab_case_unless_EnumMember_gives_it()
    {
        Assert.Equal("beta-tilde", EnumNames.Name(VarianceKind.BetaTilde));
        Assert.Equal("x0", EnumNames.Name(PredictionTarget.X0));
        Assert.Equal("cifar10", EnumNames.Name(DatasetKind.Cifar10));
        Assert.Equal("bf16", EnumNames.Name(Precision.Bf16));
        Assert.Equal(["folder", "mnist", "idx", "cifar10", "synthetic"], EnumNames.Names<DatasetKind>());
        Assert.Equal(["ddpm", "ddim", "dpmpp-2m", "dpmpp-2m-sde", "unipc"], EnumNames.Names<SamplerKind>());
        Assert.Equal(["uniform", "quadratic", "lambda", "karras"], EnumNames.Names<SpacingKind>());
    }

    [Theory]
    [InlineData("epsilon", PredictionTarget.Epsilon)]
    [InlineData("EPS", PredictionTarget.Epsilon)]
    [InlineData("x_0", PredictionTarget.X0)]
    [InlineData("sample", PredictionTarget.X0)]
    [InlineData(" v ", PredictionTarget.V)]
    public void Aliases_and_any_case_parse(string text, PredictionTarget expected)
    {
        Assert.True(EnumNames.TryParse<PredictionTarget>(text, out var value));
        Assert.Equal(expected, value);
    }

    [Fact]
    public void Anything_else_does_not_parse_and_the_message_lists_the_canonical_spellings()
    {
        Assert.False(EnumNames.TryParse<Precision>("fp16", out _));
        Assert.False(EnumNames.TryParse<Precision>(null, out _));
        Assert.False(EnumNames.TryParse<Precision>("1", out _)); // not a member's number either
        Assert.True(EnumNames.TryParse<Precision>("bfloat16", out var p) && p == Precision.Bf16);
        Assert.Equal("unknown precision 'fp16' (known: fp32, bf16)", EnumNames.Unknown<Precision>("fp16", "precision"));
    }

    [Fact]
    public void Every_spelling_reads_back_as_its_member()
    {
        static void RoundTrip<T>() where T : struct, Enum
        {
            foreach (var value in Enum.GetValues<T>())
            {
                Assert.True(EnumNames.TryParse<T>(EnumNames.Name(value), out var back));
                Assert.Equal(value, back);
            }
        }
        RoundTrip<DatasetKind>();
        RoundTrip<DatasetSplit>();
        RoundTrip<ScheduleKind>();
        RoundTrip<PredictionTarget>();
        RoundTrip<NonFiniteAction>();
        RoundTrip<Precision>();
        RoundTrip<VarianceKind>();
        RoundTrip<SpacingKind>();
        RoundTrip<SamplerKind>();
    }
}
