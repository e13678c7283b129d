package dev.flotilla.vm;

import dev.flotilla.agent.protocol.AgentProtocol;

/**
 * How a VM ended.
 *
 * @param exitCode the VM process's exit code, or -1 if it was killed by a signal or is unknown; when
 *     the guest agent's own exit ended the VM and the driver knows its code (a QEMU guest that went
 *     down because its agent exited), the agent's exit code, e.g. {@link #AGENT_LEASE_EXPIRED}
 * @param signal the signal that killed it, 0 if none
 * @param reason a human-readable cause ("killed by SIGKILL", "stopped", "exited with 3")
 * @param requested true if the exit was asked for (stop/kill through this API)
 */
public record VmExit(int exitCode, int signal, String reason, boolean requested) {

  /** The guest agent ended the sandbox because its node stopped renewing its lease. */
  public static final int AGENT_LEASE_EXPIRED = AgentProtocol.EXIT_LEASE_EXPIRED;

  /** A driver's report of the agent's lease expiry, before the supervisor adds the lease it stated. */
  public static VmExit agentLeaseExpired(boolean requested) {
    return new VmExit(AGENT_LEASE_EXPIRED, 0, "the agent ended the sandbox: lease expired (its node did not renew it in time)", requested);
  }

  /** True if the guest agent ended the sandbox for lease expiry. */
  public boolean leaseExpired() {
    return exitCode == AGENT_LEASE_EXPIRED && signal == 0;
  }

  public VmExit withReason(String newReason) {
    return new VmExit(exitCode, signal, newReason, requested);
  }
}
