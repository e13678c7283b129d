package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;

/**
 * How an incarnation's VM ended, as recorded in the journal.
 *
 * @param exitCode the VM process's exit code, -1 if it died of a signal or never started
 * @param signal the signal that killed it, 0 if none
 * @param reason what happened, for people
 * @param requested true if the sandbox asked for it (stop, delete)
 */
public record VmEnd(int exitCode, int signal, String reason, boolean requested) implements FlotillaSerializable {
  boolean abnormal() {
    return !requested && (exitCode != 0 || signal != 0);
  }
}
