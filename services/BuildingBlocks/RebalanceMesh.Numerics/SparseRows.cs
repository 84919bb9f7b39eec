namespace RebalanceMesh.Numerics;

/// <summary>
/// A matrix in compressed sparse row form, for products with A and Aᵀ in O(non-zeros). Constraint matrices of
/// rebalancing problems are mostly identity rows plus a few dense ones, so this is where their cost goes.
/// </summary>
public sealed class SparseRows
{
    private readonly int[] _rowStart;
    private readonly int[] _column;
    private readonly double[] _value;

    private SparseRows(int rows, int columns, int[] rowStart, int[] column, double[] value)
    {
        Rows = rows;
        Columns = columns;
        _rowStart = rowStart;
        _column = column;
        _value = value;
    }

    public int Rows { get; }

    public int Columns { get; }

    public int NonZeros => _value.Length;

    /// <summary>The non-zeros of a dense matrix given by its entries.</summary>
    public static SparseRows FromDense(int rows, int columns, Func<int, int, double> entry)
    {
        var start = new int[rows + 1];
        var column = new List<int>();
        var value = new List<double>();
        for (var r = 0; r < rows; r++)
        {
            for (var c = 0; c < columns; c++)
            {
                var v = entry(r, c);
                if (v != 0)
                {
                    column.Add(c);
                    value.Add(v);
                }
            }

            start[r + 1] = column.Count;
        }

        return new SparseRows(rows, columns, start, column.ToArray(), value.ToArray());
    }

    /// <summary>The columns and values of row <paramref name="row"/>'s non-zeros.</summary>
    public (ReadOnlyMemory<int> Columns, ReadOnlyMemory<double> Values) Row(int row) =>
        (_column.AsMemory(_rowStart[row], _rowStart[row + 1] - _rowStart[row]), _value.AsMemory(_rowStart[row], _rowStart[row + 1] - _rowStart[row]));

    /// <summary>y = A x.</summary>
    public void Multiply(ReadOnlySpan<double> x, Span<double> y)
    {
        for (var r = 0; r < Rows; r++)
        {
            double sum = 0;
            for (var k = _rowStart[r]; k < _rowStart[r + 1]; k++)
            {
                sum += _value[k] * x[_column[k]];
            }

            y[r] = sum;
        }
    }

    /// <summary>x = Aᵀ y.</summary>
    public void TransposeMultiply(ReadOnlySpan<double> y, Span<double> x)
    {
        x.Clear();
        for (var r = 0; r < Rows; r++)
        {
            var yr = y[r];
            if (yr == 0)
            {
                continue;
            }

            for (var k = _rowStart[r]; k < _rowStart[r + 1]; k++)
            {
                x[_column[k]] += _value[k] * yr;
            }
        }
    }

    /// <summary>K += Σᵣ weightᵣ·aᵣaᵣᵀ into a row-major Columns × Columns matrix: O(Σ non-zeros² per row).</summary>
    public void AddWeightedGram(ReadOnlySpan<double> weight, Span<double> k)
    {
        var n = Columns;
        for (var r = 0; r < Rows; r++)
        {
            for (var a = _rowStart[r]; a < _rowStart[r + 1]; a++)
            {
                var scaled = weight[r] * _value[a];
                var row = _column[a] * n;
                for (var b = _rowStart[r]; b < _rowStart[r + 1]; b++)
                {
                    k[row + _column[b]] += scaled * _value[b];
                }
            }
        }
    }
}
