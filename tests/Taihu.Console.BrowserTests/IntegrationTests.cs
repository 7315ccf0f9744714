using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class IntegrationTests(ConsoleFixture fixture)
{
    private const string Secret = "console-webhook-secret";

    // The counters and dead letters are live (read again every two seconds) and delivery runs in the background.
    private static readonly LocatorAssertionsToHaveTextOptions Live = new() { Timeout = 20_000 };

    [Fact]
    public async Task Admin_creates_a_webhook_sees_a_dead_letter_replays_it_edits_and_deletes_the_integration()
    {
        var log = new ReceiverLog { Status = 400 };
        await using var receiver = await WebhookReceiver.StartAsync(Secret, log: log);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var deviceName = "Valve " + suffix;
        var (_, token) = await fixture.Admin.CreateDeviceAsync(deviceName);
        var page = await fixture.NewAdminPageAsync();
        page.Dialog += (_, dialog) => dialog.AcceptAsync();

        await page.GotoAsync("/integrations");
        await page.GetByText("Create integration").First.ClickAsync();
        var form = page.GetByTestId("create-integration");
        await form.Locator("input[name=Name]").FillAsync("Dispatch " + suffix);
        await Expect(form.Locator("input[name=Topic]")).ToBeHiddenAsync();
        await form.Locator("input[name=Url]").FillAsync(receiver.Url);
        await form.Locator("input[name=Secret]").FillAsync(Secret);
        foreach (var type in new[] { "ATTRIBUTES", "CONNECT", "DISCONNECT", "ALARM_CREATED", "ALARM_UPDATED", "ALARM_CLEARED", "RPC_REQUEST" })
        {
            await form.Locator($"input[name=MessageTypes][value={type}]").UncheckAsync();
        }

        await form.GetByRole(AriaRole.Button, new() { Name = "Create integration" }).ClickAsync();
        await Expect(page.GetByTestId("integration-name")).ToHaveTextAsync("Dispatch " + suffix);

        // The receiver refuses (400): the events (the test's point, and the connectivity point 'active') are
        // dead-lettered at once and show up on the page by themselves.
        await NumberedTelemetry.PublishAsync(fixture.Server, token, 7);
        var rows = page.GetByTestId("dead-letter-table").Locator("tbody tr");
        await Expect(rows.First).ToContainTextAsync(deviceName, new() { Timeout = 20_000 });
        await Expect(rows.First).ToContainTextAsync("(HTTP 400)");
        await Expect(page.GetByTestId("stat-dead")).Not.ToHaveTextAsync("0", new() { Timeout = 20_000 });
        await ConsoleFixture.ScreenshotAsync(page, "console-integration");

        // Fixed, and replayed from the page: the event arrives again (the same id), no dead letter is left.
        log.Status = 200;
        await page.GetByTestId("replay-all").ClickAsync();
        await Expect(page.GetByTestId("replayed")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex(@"^\d+ dead letter\(s\) put back in the outbox\.$"));
        await log.WaitAsync(events => NumberedTelemetry.Numbers(events, deviceName).Count(n => n == 7) == 2);
        await Expect(page.GetByTestId("no-dead-letters")).ToBeVisibleAsync(new() { Timeout = 20_000 });
        await Expect(page.GetByTestId("stat-dead")).ToHaveTextAsync("0", Live);
        await Expect(page.GetByTestId("stat-sent")).Not.ToHaveTextAsync("0", Live);

        // The list shows it with its counters.
        await page.GotoAsync("/integrations");
        var listed = page.Locator($"tr[data-integration='Dispatch {suffix}']");
        await Expect(listed).ToContainTextAsync(receiver.Url);
        await Expect(listed.Locator("[data-stat=sent]")).Not.ToHaveTextAsync("0");
        await Expect(listed.Locator("[data-stat=dead]")).ToHaveTextAsync("0");
        await ConsoleFixture.ScreenshotAsync(page, "console-integrations");

        // Edited: a bad URL is refused with the platform's message, then a new name is saved.
        await listed.GetByRole(AriaRole.Link).ClickAsync();
        await page.GetByText("Edit the integration").ClickAsync();
        var edit = page.GetByTestId("edit-integration");
        await edit.Locator("input[name=Url]").FillAsync("ftp://example.com/hook");
        await edit.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        // The platform's message is shown at the field it names, and the text is kept as typed.
        await Expect(edit.Locator("[data-testid=integration-error][data-field=Url]")).ToHaveTextAsync("configuration.url must be an absolute http or https URL.");
        await Expect(edit.Locator("input[name=Url]")).ToHaveValueAsync("ftp://example.com/hook");
        await Expect(edit.Locator("input[name=Url]")).ToHaveAttributeAsync("aria-invalid", "true");
        await edit.Locator("input[name=Url]").FillAsync(receiver.Url);
        await edit.Locator("input[name=Name]").FillAsync("Dispatch renamed " + suffix);
        await edit.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        await Expect(page.GetByTestId("integration-name")).ToHaveTextAsync("Dispatch renamed " + suffix);
        var id = page.Url.Split('/')[^1];
        // The secret was left empty: the stored one is kept.
        Assert.Equal("co******", (await fixture.Admin.GetAsync($"/api/integration/{id}"))["configuration"]!["secret"]!.GetValue<string>());

        await page.GetByTestId("delete-integration").ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/integrations$"));
        await Expect(page.Locator($"tr[data-integration='Dispatch renamed {suffix}']")).ToHaveCountAsync(0);
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/integration/{id}"), System.Net.HttpStatusCode.NotFound);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task The_form_sets_every_setting_of_the_API_and_shows_the_platforms_message_at_the_field()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var profileName = "Meters " + suffix;
        var profile = (await fixture.Admin.PostAsync("/api/deviceProfile", new { name = profileName }))["id"]!["id"]!.GetValue<string>();
        var page = await fixture.NewAdminPageAsync();

        // Created with a device profile filter, retry limit, request timeout and RPC answers; the browser checks
        // nothing, so a retry limit the platform refuses comes back with its message at that field, the rest kept.
        await page.GotoAsync("/integrations");
        await page.GetByText("Create integration").First.ClickAsync();
        var form = page.GetByTestId("create-integration");
        await form.Locator("input[name=Name]").FillAsync("Meters " + suffix);
        await form.Locator("input[name=Url]").FillAsync("http://127.0.0.1:9/meters");
        await form.Locator("input[name=Secret]").FillAsync(Secret);
        await form.GetByTestId("integration-profiles").GetByLabel(profileName).CheckAsync();
        await form.Locator("input[name=RetryLimitSeconds]").FillAsync("0.5");
        await form.Locator("input[name=RequestTimeoutSeconds]").FillAsync("2.5");
        await form.Locator("input[name=AnswerRpc]").CheckAsync();
        await form.GetByRole(AriaRole.Button, new() { Name = "Create integration" }).ClickAsync();
        form = page.GetByTestId("create-integration");
        var error = form.Locator("[data-testid=integration-error][data-field=RetryLimitSeconds]");
        await Expect(error).ToHaveTextAsync("configuration.retryLimitMs is 1000 (1 s) to 2592000000 (30 days).");
        await Expect(form.Locator("input[name=RetryLimitSeconds]")).ToHaveAttributeAsync("aria-invalid", "true");
        await Expect(form.Locator("input[name=Name]")).ToHaveValueAsync("Meters " + suffix);
        await Expect(form.Locator("input[name=RequestTimeoutSeconds]")).ToHaveValueAsync("2.5");
        await Expect(form.Locator("input[name=AnswerRpc]")).ToBeCheckedAsync();
        await Expect(form.GetByTestId("integration-profiles").GetByLabel(profileName)).ToBeCheckedAsync();
        await Expect(page.GetByTestId("error")).ToHaveCountAsync(0);

        // The secret is never shown again, so it is typed again with the fixed value.
        await form.Locator("input[name=RetryLimitSeconds]").FillAsync("90");
        await form.Locator("input[name=Secret]").FillAsync(Secret);
        await form.GetByRole(AriaRole.Button, new() { Name = "Create integration" }).ClickAsync();
        await Expect(page.GetByTestId("integration-name")).ToHaveTextAsync("Meters " + suffix);
        var id = page.Url.Split('/')[^1];
        var saved = await fixture.Admin.GetAsync($"/api/integration/{id}");
        Assert.Equal(profile, saved["deviceProfileIds"]!.AsArray().Single()!.GetValue<string>());
        Assert.Equal(90_000, saved["configuration"]!["retryLimitMs"]!.GetValue<long>());
        Assert.Equal(2_500, saved["configuration"]!["requestTimeoutMs"]!.GetValue<long>());
        Assert.True(saved["configuration"]!["answerRpc"]!.GetValue<bool>());

        // Edited: the form shows what is stored; the timeout refused at its field, then every profile again and an
        // MQTT republish to an external broker speaking 3.1.1.
        await page.GetByText("Edit the integration").ClickAsync();
        var edit = page.GetByTestId("edit-integration");
        await Expect(edit.Locator("input[name=RetryLimitSeconds]")).ToHaveValueAsync("90");
        await Expect(edit.Locator("input[name=RequestTimeoutSeconds]")).ToHaveValueAsync("2.5");
        await Expect(edit.GetByTestId("integration-profiles").GetByLabel(profileName)).ToBeCheckedAsync();
        await edit.Locator("input[name=RequestTimeoutSeconds]").FillAsync("600");
        await edit.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        await Expect(page.GetByTestId("edit-integration").Locator("[data-testid=integration-error][data-field=RequestTimeoutSeconds]"))
            .ToHaveTextAsync("configuration.requestTimeoutMs is 100 to 300000 (5 min).");
        edit = page.GetByTestId("edit-integration");
        await edit.Locator("select[name=Type]").SelectOptionAsync("MQTT");
        await edit.GetByTestId("integration-profiles").GetByLabel(profileName).UncheckAsync();
        await edit.Locator("input[name=Topic]").FillAsync("meters/{deviceName}");
        await edit.Locator("input[name=Host]").FillAsync("broker.example.com");
        await edit.Locator("select[name=ProtocolVersion]").SelectOptionAsync("3.1.1");
        await edit.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        await Expect(page.GetByText("MQTT · meters/{deviceName} @ broker.example.com:1883")).ToBeVisibleAsync();
        saved = await fixture.Admin.GetAsync($"/api/integration/{id}");
        Assert.Equal("MQTT", saved["type"]!.GetValue<string>());
        Assert.Equal("3.1.1", saved["configuration"]!["protocolVersion"]!.GetValue<string>());
        Assert.Equal("broker.example.com", saved["configuration"]!["host"]!.GetValue<string>());
        Assert.True(saved["deviceProfileIds"] is null || saved["deviceProfileIds"]!.AsArray().Count == 0);
        await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{id}");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Viewer_sees_integrations_but_no_way_to_change_them_and_the_server_refuses()
    {
        var name = "Republish " + Guid.NewGuid().ToString("N")[..8];
        var created = await fixture.Admin.PostAsync("/api/integration", new { name, type = "MQTT", configuration = new { topic = "city/{deviceName}" } });
        var id = created["id"]!["id"]!.GetValue<string>();
        const string password = "viewer-password-3";
        var email = await fixture.CreateUserAsync("VIEWER", password);
        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, email, password);

        await page.GotoAsync("/integrations");
        await Expect(page.Locator($"tr[data-integration='{name}']")).ToContainTextAsync("city/{deviceName}");
        await Expect(page.GetByTestId("create-integration")).ToHaveCountAsync(0);
        await page.Locator($"tr[data-integration='{name}']").GetByRole(AriaRole.Link).ClickAsync();
        await Expect(page.GetByTestId("integration-name")).ToHaveTextAsync(name);
        await Expect(page.GetByTestId("integration-stats")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("edit-integration")).ToHaveCountAsync(0);
        await Expect(page.GetByTestId("delete-integration")).ToHaveCountAsync(0);
        await Expect(page.GetByTestId("replay-all")).ToHaveCountAsync(0);

        // Asked anyway with the viewer's session: refused, nothing changed.
        Assert.Equal(403, (await page.APIRequest.PostAsync($"/api/integration/{id}/deadLetters/replay")).Status);
        Assert.Equal(403, (await page.APIRequest.DeleteAsync($"/api/integration/{id}")).Status);
        var antiforgery = await page.Locator("input[name=__RequestVerificationToken]").First.GetAttributeAsync("value");
        await page.APIRequest.PostAsync($"/integrations/{id}", new()
        {
            Form = page.APIRequest.CreateFormData().Append("_handler", "delete-integration").Append("__RequestVerificationToken", antiforgery!),
            MaxRedirects = 0,
        });
        Assert.Equal(name, (await fixture.Admin.GetAsync($"/api/integration/{id}"))["name"]!.GetValue<string>());
        await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{id}");
        await page.Context.CloseAsync();
    }
}
