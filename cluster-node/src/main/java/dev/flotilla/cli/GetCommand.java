package dev.flotilla.cli;

import dev.flotilla.api.v1.GetSandboxRequest;
import dev.flotilla.api.v1.Sandbox;
import java.time.Instant;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "get", mixinStandardHelpOptions = true, description = "Show one sandbox.")
final class GetCommand extends TimedCommand {
  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
  String id;

  @Option(names = {"-o", "--output"}, paramLabel = "FORMAT", defaultValue = "table",
      converter = OutputFormat.Converter.class,
      description = "text (default) or json (one object: id, tenant, phase, incarnation, node, "
          + "labels, createdAt, updatedAt, statusMessage, restartCount, desiredRunning, spec).")
  OutputFormat output;

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    Sandbox s = client.call(SandboxServiceMethods.GET_SANDBOX,
        GetSandboxRequest.newBuilder().setId(id).build(), id);
    ctx.out().print(output == OutputFormat.JSON
        ? SandboxJson.object(s) : SandboxText.details(s, Instant.now()));
    return ExitCodes.OK;
  }
}
