package dev.flotilla.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.ParentCommand;

/** A command that talks to a node: checks its arguments, connects, runs, returns the exit code. */
abstract class ClientCommand implements Callable<Integer> {
  @Mixin ClientOptions options;
  @ParentCommand Cli cli;

  /** Checks what picocli cannot, before anything is sent; throws TypeConversionException. */
  void validate() {}

  abstract int run(FlotillaClient client, CliContext ctx);

  @Override
  public final Integer call() {
    validate();
    CliContext ctx = cli.context();
    try (FlotillaClient client = new FlotillaClient(options.resolve(cli.options, ctx))) {
      return run(client, ctx);
    }
  }
}
