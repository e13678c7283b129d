package dev.flotilla.cli;

import dev.flotilla.api.v1.ListSandboxesRequest;
import dev.flotilla.api.v1.ListSandboxesResponse;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.Sandbox;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "ls", mixinStandardHelpOptions = true,
    description = "List your sandboxes (all phases but DELETED unless --phase is given).")
final class ListCommand extends TimedCommand {
  @Option(names = "--label", paramLabel = "KEY=VALUE",
      description = "Only sandboxes with this label; repeatable, all must match.")
  List<String> labels;

  @Option(names = "--phase", paramLabel = "PHASE", split = ",",
      converter = ArgParsers.PhaseConverter.class,
      description = "Only sandboxes in this phase (e.g. running); repeatable or comma-separated, "
          + "any may match.")
  List<Phase> phases;

  @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
      converter = OutputFormat.Converter.class,
      description = "table (default) or json (an array of the objects `get -o json` prints).")
  OutputFormat output;

  @Option(names = "--page-size", hidden = true, defaultValue = "0")
  int pageSize;

  @Override
  void validate() {
    ArgParsers.labels(labels);
  }

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    ListSandboxesRequest.Builder req = ListSandboxesRequest.newBuilder()
        .putAllLabelSelector(ArgParsers.labels(labels))
        .setPageSize(pageSize);
    if (phases != null) req.addAllPhases(phases);
    List<Sandbox> all = new ArrayList<>();
    Pages.each(token -> client.call(SandboxServiceMethods.LIST_SANDBOXES, req.setPageToken(token).build(), null),
        ListSandboxesResponse::getNextPageToken, page -> all.addAll(page.getSandboxesList()), "listing");
    ctx.out().print(output == OutputFormat.JSON
        ? SandboxJson.array(all) : SandboxText.table(all, Instant.now()));
    return ExitCodes.OK;
  }
}
