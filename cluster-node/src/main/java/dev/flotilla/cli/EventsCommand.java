package dev.flotilla.cli;

import dev.flotilla.api.v1.HistoryEvent;
import dev.flotilla.api.v1.ListEventsRequest;
import dev.flotilla.api.v1.ListEventsResponse;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "events", mixinStandardHelpOptions = true,
    description = {"Print a sandbox's whole recorded history, oldest first, one line each: time, "
        + "incarnation, kind, what happened.",
        "Kinds: created, vm-starting, vm-started, vm-reattached, vm-exited, restarting, moved, "
            + "paused, resumed, suspended, stop-requested, start-requested, delete-requested, deleted, failed. "
            + "Read from the journal: a deleted sandbox's history stays readable."})
final class EventsCommand extends TimedCommand {
  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
  String id;

  @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
      converter = OutputFormat.Converter.class,
      description = "table (default) or json (an array of {sequence, at, kind, incarnation, node, description}).")
  OutputFormat output;

  @Option(names = "--page-size", hidden = true, defaultValue = "0")
  int pageSize;

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    ListEventsRequest.Builder req = ListEventsRequest.newBuilder().setId(id).setPageSize(pageSize);
    List<HistoryEvent> all = new ArrayList<>();
    Pages.each(token -> client.call(SandboxServiceMethods.LIST_EVENTS, req.setPageToken(token).build(), id),
        ListEventsResponse::getNextPageToken, page -> all.addAll(page.getEventsList()), "history");
    if (output == OutputFormat.JSON) {
      ctx.out().print(SandboxJson.events(all));
    } else {
      StringBuilder b = new StringBuilder();
      for (HistoryEvent e : all) b.append(SandboxText.historyLine(e));
      ctx.out().print(b);
    }
    return ExitCodes.OK;
  }
}
