package dev.flotilla.sandbox;

import dev.flotilla.persistence.FlotillaSerializable;
import java.time.Instant;

/**
 * Published on the cluster-wide sandbox event topic after every persisted lifecycle change.
 *
 * @param event short name of what happened ("created", "running", "paused", "vm-exited", ...)
 */
public record SandboxChanged(SandboxView sandbox, String event, Instant at) implements FlotillaSerializable {}
