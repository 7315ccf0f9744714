using System.Net;
using System.Text.RegularExpressions;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// The web console behind a load balancer: the sign-in form fetched from one node is accepted by another (its
/// antiforgery token), and the session cookie that node sets is good on the first. Two real server processes on one
/// PostgreSQL database; the browser is an HttpClient with one cookie jar (cookies do not depend on the port).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed partial class ClusterConsoleTests(PostgresServer postgres)
{
    [Fact]
    public async Task ASignInOnOneNode_IsASessionOnEveryNode()
    {
        // As on two machines: each node its own home directory, where ASP.NET Core keeps its keys by default.
        var homes = new[] { Directory.CreateTempSubdirectory("taihu-home-").FullName, Directory.CreateTempSubdirectory("taihu-home-").FullName };
        try
        {
            await using var cluster = await TestCluster.StartAsync(postgres, "console", extra: i => new Dictionary<string, string> { ["HOME"] = homes[i] });
            using var handler = new HttpClientHandler { CookieContainer = new CookieContainer(), AllowAutoRedirect = false };
            using var browser = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(30) };
            var node0 = cluster.Nodes[0].HttpBaseAddress;
            var node1 = cluster.Nodes[1].HttpBaseAddress;

            // Not signed in: the console sends the browser to its sign-in page.
            var before = await browser.GetAsync(new Uri(node0, "/"));
            Assert.Equal(HttpStatusCode.Redirect, before.StatusCode);
            Assert.Contains("/login", before.Headers.Location!.ToString(), StringComparison.Ordinal);

            // The form comes from node 0 and is sent to node 1.
            var page = await browser.GetStringAsync(new Uri(node0, "/login"));
            var fields = HiddenFields(page);
            Assert.Contains(fields, f => f.Key == "__RequestVerificationToken");
            fields.Add(new("Form.Email", "sysadmin@taihu.local"));
            fields.Add(new("Form.Password", ServerProcess.AdminPassword));
            fields.Add(new("Form.ReturnUrl", "/"));
            using var form = new FormUrlEncodedContent(fields);
            var signIn = await browser.PostAsync(new Uri(node1, "/login"), form);
            Assert.True(signIn.StatusCode is HttpStatusCode.Redirect or HttpStatusCode.Found or HttpStatusCode.SeeOther,
                $"sign-in on node 1 with node 0's form: {(int)signIn.StatusCode} {await signIn.Content.ReadAsStringAsync()}");
            Assert.Equal("/", new Uri(node1, signIn.Headers.Location!).AbsolutePath);

            // The session cookie node 1 set is a session on node 0, and on node 1.
            foreach (var node in new[] { node0, node1 })
            {
                var home = await browser.GetAsync(new Uri(node, "/"));
                Assert.Equal(HttpStatusCode.OK, home.StatusCode);
                Assert.Contains("sysadmin@taihu.local", await home.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            }
        }
        finally
        {
            foreach (var home in homes)
            {
                Directory.Delete(home, recursive: true);
            }
        }
    }

    private static List<KeyValuePair<string, string>> HiddenFields(string html)
    {
        var fields = new List<KeyValuePair<string, string>>();
        foreach (Match input in HiddenInput().Matches(html))
        {
            var name = NameAttribute().Match(input.Value);
            var value = ValueAttribute().Match(input.Value);
            if (name.Success && name.Groups[1].Value != "Form.ReturnUrl")
            {
                fields.Add(new(WebUtility.HtmlDecode(name.Groups[1].Value), value.Success ? WebUtility.HtmlDecode(value.Groups[1].Value) : ""));
            }
        }

        return fields;
    }

    [GeneratedRegex("<input[^>]*type=\"hidden\"[^>]*>")]
    private static partial Regex HiddenInput();

    [GeneratedRegex("name=\"([^\"]*)\"")]
    private static partial Regex NameAttribute();

    [GeneratedRegex("value=\"([^\"]*)\"")]
    private static partial Regex ValueAttribute();
}
