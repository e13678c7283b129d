package dev.flotilla.cli;

import java.util.concurrent.Callable;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** A command that only groups others ({@code flotilla image ...}, {@code flotilla fs ...}): alone, it says what there is to do. */
abstract class CommandGroup implements Callable<Integer> {
  @ParentCommand Cli cli;
  @Spec CommandSpec spec;

  Cli cli() {
    return cli;
  }

  @Override
  public Integer call() {
    spec.commandLine().usage(cli.context().err());
    return ExitCodes.USAGE;
  }
}
