using RebalanceMesh.Numerics;

namespace RebalanceMesh.BuildingBlocks.Tests;

public class NumericsTests
{
    [Fact]
    public void Cholesky_factors_a_hand_computed_matrix_and_solves()
    {
        // A = LLᵀ with L = [[2,0,0],[6,1,0],[-8,5,3]] (the textbook example): A = [[4,12,-16],[12,37,-43],[-16,-43,98]].
        double[] a = [4, 12, -16, 12, 37, -43, -16, -43, 98];
        var factor = DenseCholesky.Factor(a, 3);
        Assert.Equal([2.0, 0, 0, 6, 1, 0, -8, 5, 3], factor.Lower.ToArray());

        // A·[1, 2, 3] = [-20, -43, 192].
        var x = new double[3];
        factor.Solve([-20, -43, 192], x);
        Assert.Equal(1, x[0], 12);
        Assert.Equal(2, x[1], 12);
        Assert.Equal(3, x[2], 12);
    }

    [Fact]
    public void Cholesky_solves_a_large_random_system_to_rounding()
    {
        var random = new Random(4);
        const int n = 157; // not a multiple of any vector width
        var b = new double[n * n];
        for (var i = 0; i < b.Length; i++)
        {
            b[i] = random.NextDouble() - 0.5;
        }

        var a = new double[n * n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                double sum = i == j ? n : 0;
                for (var k = 0; k < n; k++)
                {
                    sum += b[(i * n) + k] * b[(j * n) + k];
                }

                a[(i * n) + j] = sum;
            }
        }

        var truth = Enumerable.Range(0, n).Select(i => Math.Sin(i)).ToArray();
        var rhs = Enumerable.Range(0, n).Select(i => Enumerable.Range(0, n).Sum(j => a[(i * n) + j] * truth[j])).ToArray();
        var x = new double[n];
        DenseCholesky.Factor(a, n).Solve(rhs, x);
        Assert.All(Enumerable.Range(0, n), i => Assert.Equal(truth[i], x[i], 10));
    }

    [Fact]
    public void Cholesky_refuses_an_indefinite_matrix()
    {
        Assert.Throws<ArgumentException>(() => DenseCholesky.Factor([1, 2, 2, 1], 2));
        Assert.Throws<ArgumentException>(() => DenseCholesky.Factor([1, 2, 3], 2));
    }

    [Fact]
    public void Sparse_rows_multiply_like_the_dense_matrix()
    {
        double[,] dense = { { 1, 0, 2 }, { 0, 0, 0 }, { 0, -3, 0 }, { 4, 5, 6 } };
        var a = SparseRows.FromDense(4, 3, (r, c) => dense[r, c]);
        Assert.Equal(6, a.NonZeros);

        var y = new double[4];
        a.Multiply([1, 2, 3], y);
        Assert.Equal([7.0, 0, -6, 32], y);

        var x = new double[3];
        a.TransposeMultiply([1, 10, 100, 1000], x);
        Assert.Equal([4001.0, 4700, 6002], x);

        // K += Σ wᵣ aᵣaᵣᵀ: with weights 1, 1, 2, 0 → rows 0 and 2 only.
        var k = new double[9];
        a.AddWeightedGram([1, 1, 2, 0], k);
        Assert.Equal([1.0, 0, 2, 0, 18, 0, 2, 0, 4], k);
    }
}
