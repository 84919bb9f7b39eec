using System.Text.Json;

namespace RebalanceMesh.Planning.Tests;

/// <summary>Named cases recorded by the scripts in tests/reference (a JSON array of objects with a "name"), copied beside the tests.</summary>
public static class ReferenceCases
{
    public static JsonElement Load(string file) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Reference", file))).RootElement;

    public static JsonElement Case(string file, string name) => Load(file).EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);

    /// <summary>The case names of a file, as xUnit theory data.</summary>
    public static TheoryData<string> Names(string file)
    {
        var data = new TheoryData<string>();
        foreach (var element in Load(file).EnumerateArray())
        {
            data.Add(element.GetProperty("name").GetString()!);
        }

        return data;
    }
}
