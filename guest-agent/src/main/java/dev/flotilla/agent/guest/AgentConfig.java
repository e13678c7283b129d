package dev.flotilla.agent.guest;

import dev.flotilla.agent.protocol.AgentProtocol;
import java.time.Duration;
import java.util.List;
import java.util.Objects;

/**
 * What the agent was started for and how.
 *
 * @param sandboxId the sandbox this agent serves; a handshake naming another is refused
 * @param incarnation the VM incarnation; a handshake naming another is refused (fencing)
 * @param maxPayload frame payload limit
 * @param fileChunk largest ReadFile answer
 * @param exitRetention how long an exited process stays known after a WaitProcess reported it
 * @param powerOffCommand run after a Shutdown with power_off (a VM build passes e.g. {@code poweroff -f});
 *     empty: the agent just exits
 * @param secret what a handshake must carry besides sandbox id and incarnation
 * @param execDefaults the image's Env, WorkingDir and User for every process it starts
 * @param tenantRoot the tenant's root file system when the agent runs outside it (a microVM's
 *     agent stays in the initramfs), null when the agent's own root is the tenant's
 * @param deferredRoot a template's agent: {@code tenantRoot} is not mounted yet, and a rebirth
 *     mounts it with this script (see {@link dev.flotilla.agent.guest.rebirth.DeferredRoot}); null
 *     when the root is there from the start
 * @param template a template VM's agent: it loads the code a clone's rebirth runs before the
 *     template is saved (always so with a {@code deferredRoot}; a template whose root is mounted
 *     before its save has none)
 */
public record AgentConfig(
    String sandboxId,
    long incarnation,
    int maxPayload,
    int fileChunk,
    Duration exitRetention,
    List<String> powerOffCommand,
    HandshakeSecret secret,
    dev.flotilla.agent.guest.process.ExecDefaults execDefaults,
    dev.flotilla.agent.guest.process.TenantRoot tenantRoot,
    dev.flotilla.agent.guest.rebirth.DeferredRoot deferredRoot,
    boolean template) {
  public AgentConfig {
    Objects.requireNonNull(sandboxId, "sandboxId");
    Objects.requireNonNull(secret, "secret");
    powerOffCommand = List.copyOf(powerOffCommand);
    execDefaults = execDefaults == null ? dev.flotilla.agent.guest.process.ExecDefaults.NONE : execDefaults;
    if (deferredRoot != null && tenantRoot == null) {
      throw new IllegalArgumentException("a deferred root needs the tenant root it mounts");
    }
    template = template || deferredRoot != null;
  }

  /** The tenant's root is there from the start (or the agent's own root is the tenant's). */
  public AgentConfig(String sandboxId, long incarnation, int maxPayload, int fileChunk, Duration exitRetention,
      List<String> powerOffCommand, HandshakeSecret secret, dev.flotilla.agent.guest.process.ExecDefaults execDefaults,
      dev.flotilla.agent.guest.process.TenantRoot tenantRoot) {
    this(sandboxId, incarnation, maxPayload, fileChunk, exitRetention, powerOffCommand, secret, execDefaults, tenantRoot, null, false);
  }

  /** The agent's root is the tenant's. */
  public AgentConfig(String sandboxId, long incarnation, int maxPayload, int fileChunk, Duration exitRetention,
      List<String> powerOffCommand, HandshakeSecret secret, dev.flotilla.agent.guest.process.ExecDefaults execDefaults) {
    this(sandboxId, incarnation, maxPayload, fileChunk, exitRetention, powerOffCommand, secret, execDefaults, null);
  }

  /** Without a secret (the legacy handshake). */
  public AgentConfig(String sandboxId, long incarnation, int maxPayload, int fileChunk, Duration exitRetention,
      List<String> powerOffCommand) {
    this(sandboxId, incarnation, maxPayload, fileChunk, exitRetention, powerOffCommand, HandshakeSecret.none(), null);
  }

  public AgentConfig withSecret(HandshakeSecret s) {
    return new AgentConfig(sandboxId, incarnation, maxPayload, fileChunk, exitRetention, powerOffCommand, s, execDefaults,
        tenantRoot, deferredRoot, template);
  }

  /** A template's agent whose tenant root {@code root} is mounted by {@code deferred} at its rebirth. */
  public AgentConfig withDeferredRoot(dev.flotilla.agent.guest.process.TenantRoot root,
      dev.flotilla.agent.guest.rebirth.DeferredRoot deferred) {
    return new AgentConfig(sandboxId, incarnation, maxPayload, fileChunk, exitRetention, powerOffCommand, secret,
        execDefaults, root, deferred, true);
  }

  /** A template's agent whose tenant root is there from the start: only the rebirth's code is loaded ahead. */
  public AgentConfig asTemplate() {
    return new AgentConfig(sandboxId, incarnation, maxPayload, fileChunk, exitRetention, powerOffCommand, secret,
        execDefaults, tenantRoot, deferredRoot, true);
  }

  public static AgentConfig of(String sandboxId, long incarnation) {
    return new AgentConfig(sandboxId, incarnation, AgentProtocol.DEFAULT_MAX_PAYLOAD, 512 * 1024,
        Duration.ofSeconds(30), List.of(), HandshakeSecret.none(), null);
  }
}
