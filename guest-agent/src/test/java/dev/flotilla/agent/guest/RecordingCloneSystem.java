package dev.flotilla.agent.guest;

import dev.flotilla.agent.guest.rebirth.CloneSystem;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.HexFormat;
import java.util.List;

/**
 * A {@link CloneSystem} that changes nothing: it appends each call as a line to {@code log}, the
 * file a test's deferred-root script appends to as well, so one file shows the order of all steps.
 * {@link #failOn} makes one kind of call fail.
 */
final class RecordingCloneSystem implements CloneSystem {
  final Path log;
  volatile String failOn = "";
  /** How often {@link #prepare} ran: a template's agent loads its rebirth's code ahead, once. */
  final java.util.concurrent.atomic.AtomicInteger prepared = new java.util.concurrent.atomic.AtomicInteger();

  RecordingCloneSystem(Path log) {
    this.log = log;
  }

  @Override
  public void prepare() {
    prepared.incrementAndGet();
  }

  @Override
  public void reseedKernelRng(byte[] seed) throws CloneSystemException {
    record("rng " + HexFormat.of().formatHex(seed));
  }

  @Override
  public void setWallClock(long unixMillis) throws CloneSystemException {
    record("clock " + unixMillis);
  }

  @Override
  public void setHostname(String hostname) throws CloneSystemException {
    record("hostname " + hostname);
  }

  private void record(String line) throws CloneSystemException {
    if (!failOn.isEmpty() && line.startsWith(failOn)) throw new CloneSystemException("recorded failure of " + failOn);
    try {
      Files.writeString(log, line + "\n", StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  List<String> lines() throws IOException {
    return Files.exists(log) ? Files.readAllLines(log) : List.of();
  }
}
