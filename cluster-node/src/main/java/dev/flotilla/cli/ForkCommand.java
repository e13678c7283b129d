package dev.flotilla.cli;

import dev.flotilla.api.v1.ForkSandboxRequest;
import java.time.Duration;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "fork", mixinStandardHelpOptions = true,
    description = {"Make a new sandbox from a running sandbox's live state, wait until it is RUNNING, then print its id. "
        + "The source is stopped for the save only and runs on; both continue from the same memory and disk, the fork "
        + "with its own id, identity, random generator, clock and writable disk. The fork counts against the tenant's quota.",
        "qemu only: the process driver cannot save a sandbox's memory."})
final class ForkCommand extends TimedCommand {
  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox to fork (RUNNING).")
  String id;

  @Option(names = "--request-id", paramLabel = "ID", converter = ArgParsers.RequestIdConverter.class,
      description = "Makes the fork idempotent: a retry with the same id returns the same fork.")
  String requestId;

  @Option(names = "--no-wait", description = "Print the fork's id as soon as it is recorded (CREATING) instead of waiting for RUNNING.")
  boolean noWait;

  @Option(names = "--wait-timeout", paramLabel = "DURATION", defaultValue = "5m", converter = ArgParsers.DurationConverter.class,
      description = "How long to wait for RUNNING (default 5m); past it the id is printed and the exit code is 1.")
  Duration waitTimeout;

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    var req = ForkSandboxRequest.newBuilder().setId(id);
    if (requestId != null) req.setRequestId(requestId);
    return CreateCommand.printWhenSettled(client, ctx, client.call(SandboxServiceMethods.FORK_SANDBOX, req.build(), id), noWait, waitTimeout);
  }
}
