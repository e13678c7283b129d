package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import java.time.Instant;

/** A sandbox as the API shows it. */
public record SandboxView(
    String id,
    String tenant,
    SandboxSpec spec,
    Phase phase,
    long incarnation,
    String node,
    Instant createdAt,
    Instant updatedAt,
    String statusMessage,
    int restartCount,
    boolean desiredRunning,
    Instant expiresAt)
    implements FlotillaSerializable {

  /** A sandbox without a timeout. */
  public SandboxView(String id, String tenant, SandboxSpec spec, Phase phase, long incarnation, String node, Instant createdAt,
      Instant updatedAt, String statusMessage, int restartCount, boolean desiredRunning) {
    this(id, tenant, spec, phase, incarnation, node, createdAt, updatedAt, statusMessage, restartCount, desiredRunning, null);
  }
}
