using System.Data.Common;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Telemetry;

/// <summary>
/// The value columns of rows written with PostgreSQL's <c>unnest</c> (<c>value_type, bool_v, long_v, dbl_v, str_v</c>),
/// one array each, bound as <c>@t, @b, @l, @v, @s</c>: a value goes in the column of its type, the others are null.
/// </summary>
internal sealed class ValueColumns(int rows)
{
    private readonly int[] _types = new int[rows];
    private readonly bool?[] _booleans = new bool?[rows];
    private readonly long?[] _longs = new long?[rows];
    private readonly double?[] _doubles = new double?[rows];
    private readonly string?[] _texts = new string?[rows];

    public void Set(int row, in KvValue value)
    {
        _types[row] = (int)value.Type;
        _booleans[row] = value.Type == DataType.Boolean ? value.Boolean : null;
        _longs[row] = value.Type == DataType.Long ? value.Long : null;
        _doubles[row] = value.Type == DataType.Double ? value.Double : null;
        _texts[row] = value.Type is DataType.String or DataType.Json ? value.Text : null;
    }

    public void Bind(DbCommand command)
    {
        command.AddParameter("t", _types);
        command.AddParameter("b", _booleans);
        command.AddParameter("l", _longs);
        command.AddParameter("v", _doubles);
        command.AddParameter("s", _texts);
    }
}
