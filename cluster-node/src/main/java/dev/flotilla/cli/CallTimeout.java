package dev.flotilla.cli;

import java.time.Duration;
import picocli.CommandLine.Option;

/**
 * {@code --timeout}, the deadline per call: on {@code flotilla} before the command name, and after
 * it on every client command but {@code create}, whose {@code --timeout} is the sandbox's lifetime
 * (there the deadline goes before the command name: {@code flotilla --timeout 10s create ...}).
 */
public final class CallTimeout {
  @Option(names = "--timeout", paramLabel = "DURATION",
      converter = ArgParsers.DurationConverter.class,
      description = "Deadline per call, e.g. 500ms, 10s, 2m (default 30s). For exec and watch it "
          + "only bounds connecting.")
  Duration value;
}
