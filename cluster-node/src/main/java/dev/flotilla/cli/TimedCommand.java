package dev.flotilla.cli;

import java.time.Duration;
import picocli.CommandLine.Mixin;

/** A client command that takes {@code --timeout} after its name as the deadline per call (all but create). */
abstract class TimedCommand extends ClientCommand {
  @Mixin CallTimeout timeout;

  @Override
  Duration callTimeout() {
    return timeout.value;
  }
}
