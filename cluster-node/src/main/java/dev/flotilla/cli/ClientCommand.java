package dev.flotilla.cli;

import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.ParentCommand;

/** A command that talks to a node: checks its arguments, connects, runs, returns the exit code. */
abstract class ClientCommand implements Callable<Integer> {
  @Mixin ClientOptions options;
  /**
   * {@link Cli}, or the group: {@link ImageCommands} for {@code flotilla image ...}, {@link TemplateCommands} for
   * {@code flotilla template ...}, {@link FsCommands} for {@code flotilla fs ...}.
   */
  @ParentCommand Object parent;

  /** Checks what picocli cannot, before anything is sent; throws TypeConversionException. */
  void validate() {}

  /** The deadline given after the command's name ({@link TimedCommand}); null: none given. */
  Duration callTimeout() {
    return null;
  }

  /** The deadline when no --timeout is given; null for {@link ClientOptions#DEFAULT_TIMEOUT}. */
  Duration defaultTimeout() {
    return null;
  }

  /** The token file of the node's data dir used when no token is given. */
  String ownTokenFile() {
    return ClientOptions.TOKEN_FILE;
  }

  Cli cli() {
    return parent instanceof CommandGroup group ? group.cli() : (Cli) parent;
  }

  abstract int run(FlotillaClient client, CliContext ctx);

  @Override
  public final Integer call() {
    validate();
    Cli cli = cli();
    CliContext ctx = cli.context();
    Duration to = callTimeout() != null ? callTimeout() : cli.timeout.value != null ? cli.timeout.value
        : defaultTimeout() != null ? defaultTimeout() : ClientOptions.DEFAULT_TIMEOUT;
    ClientOptions.Connection connection = options.resolve(cli.options, to, ctx, ownTokenFile());
    try (FlotillaClient client = new FlotillaClient(connection)) {
      return run(client, ctx);
    }
  }
}
