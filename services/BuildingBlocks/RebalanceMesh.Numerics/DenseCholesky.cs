using System.Numerics.Tensors;

namespace RebalanceMesh.Numerics;

/// <summary>
/// Cholesky factorisation A = LLᵀ of a dense symmetric positive-definite matrix held row-major, with every inner
/// loop a contiguous dot product or update (TensorPrimitives, SIMD). L is kept row-major only: forward substitution
/// takes dot products with its rows and back substitution subtracts multiples of the same rows, so a solve streams
/// the factor once per pass. Factoring costs n³/3 multiply-adds; a solve 2n².
/// </summary>
public sealed class DenseCholesky
{
    private readonly double[] _lower;

    private DenseCholesky(int n, double[] lower)
    {
        Size = n;
        _lower = lower;
    }

    public int Size { get; }

    /// <summary>L, row-major n × n (zeros above the diagonal).</summary>
    public ReadOnlySpan<double> Lower => _lower;

    /// <summary>Factors the row-major n × n matrix <paramref name="a"/> (only its lower triangle is read).</summary>
    /// <exception cref="ArgumentException">The matrix is not positive definite.</exception>
    public static DenseCholesky Factor(ReadOnlySpan<double> a, int n)
    {
        if (a.Length != n * n)
        {
            throw new ArgumentException($"Expected {n * n} entries for an {n} × {n} matrix.", nameof(a));
        }

        var l = new double[n * n];
        for (var i = 0; i < n; i++)
        {
            var rowI = l.AsSpan(i * n, n);
            for (var j = 0; j < i; j++)
            {
                var rowJ = l.AsSpan(j * n, j);
                rowI[j] = (a[(i * n) + j] - TensorPrimitives.Dot(rowI[..j], rowJ)) / l[(j * n) + j];
            }

            var diagonal = a[(i * n) + i] - TensorPrimitives.Dot(rowI[..i], rowI[..i]);
            if (!(diagonal > 0) || !double.IsFinite(diagonal))
            {
                throw new ArgumentException($"The matrix is not positive definite (pivot {i} is {diagonal:G3}).", nameof(a));
            }

            rowI[i] = Math.Sqrt(diagonal);
        }

        return new DenseCholesky(n, l);
    }

    /// <summary>Solves A x = b into <paramref name="x"/> (which may be <paramref name="b"/> itself).</summary>
    public void Solve(ReadOnlySpan<double> b, Span<double> x)
    {
        var n = Size;
        if (b.Length != n || x.Length != n)
        {
            throw new ArgumentException($"Vectors of length {n} are required.", nameof(b));
        }

        // L y = b, then Lᵀ x = y, in place in x.
        b.CopyTo(x);
        for (var i = 0; i < n; i++)
        {
            x[i] = (x[i] - TensorPrimitives.Dot(_lower.AsSpan(i * n, i), x[..i])) / _lower[(i * n) + i];
        }

        // Lᵀx = y by columns of Lᵀ (rows of L): xᵢ is final once the later rows have been subtracted.
        for (var i = n - 1; i >= 0; i--)
        {
            x[i] /= _lower[(i * n) + i];
            if (i > 0)
            {
                var head = x[..i];
                TensorPrimitives.MultiplyAdd(_lower.AsSpan(i * n, i), -x[i], head, head);
            }
        }
    }
}
