package dev.flotilla.cli;

import dev.flotilla.api.v1.ReadLogsRequest;
import java.io.PrintStream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "logs", mixinStandardHelpOptions = true,
    description = {"Print the output of a sandbox's main process (create ... -- CMD): its stdout to "
        + "yours, its stderr to yours.",
        "The node keeps the most recent output (flotilla.sandbox.main-log-max, 1 MiB by default), "
            + "across restarts of the sandbox on that node; a sandbox that moved to another node "
            + "starts a new log there."})
final class LogsCommand extends TimedCommand {
  @Option(names = {"-f", "--follow"},
      description = "Keep printing new output until the main process exits (or Ctrl-C).")
  boolean follow;

  @Option(names = "--tail", paramLabel = "N", converter = ArgParsers.TailConverter.class,
      description = "Only the last N lines (0: none, with --follow only new output; default: all the log keeps).")
  Integer tail;

  @Parameters(index = "0", paramLabel = "ID", description = "The sandbox's id.")
  String id;

  ReadLogsRequest request() {
    // The API's tail: 0 all, -1 none, N the last N lines.
    int t = tail == null ? 0 : tail == 0 ? -1 : tail;
    return ReadLogsRequest.newBuilder().setId(id).setFollow(follow).setTail(t).build();
  }

  @Override
  int run(FlotillaClient client, CliContext ctx) {
    PrintStream out = ctx.out();
    PrintStream err = ctx.err();
    client.stream(SandboxServiceMethods.READ_LOGS, request(), id, msg -> {
      switch (msg.getKindCase()) {
        case STDOUT -> Output.writeLive(out, msg.getStdout().toByteArray());
        case STDERR -> Output.writeLive(err, msg.getStderr().toByteArray());
        default -> { } // the main process's exit ends a follow; `flotilla get` tells its status
      }
    });
    return ExitCodes.OK;
  }
}
