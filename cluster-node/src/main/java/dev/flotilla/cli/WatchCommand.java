package dev.flotilla.cli;

import dev.flotilla.api.v1.WatchSandboxRequest;
import java.nio.charset.StandardCharsets;
import picocli.CommandLine.Command;
import picocli.CommandLine.Parameters;

@Command(name = "watch", mixinStandardHelpOptions = true,
    description = {"Print a sandbox's lifecycle events as they happen, one line each: time, "
        + "event, phase, incarnation, message.",
        "The first line is the sandbox as it is now (event `snapshot`). Runs until Ctrl-C or the "
        + "sandbox is deleted."})
final class WatchCommand extends TimedCommand {
  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
  String id;

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    client.stream(SandboxServiceMethods.WATCH_SANDBOX,
        WatchSandboxRequest.newBuilder().setId(id).build(), id,
        event -> Output.writeLive(ctx.out(), SandboxText.watchLine(event)
            .getBytes(StandardCharsets.UTF_8)));
    return ExitCodes.OK;
  }
}
