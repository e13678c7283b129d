package dev.flotilla.agent.protocol.client;

/**
 * What the guest said of itself in the handshake (see GuestDetails in agent.proto).
 *
 * @param sandboxId the identity the agent serves now; empty from an agent older than rebirth support
 * @param incarnation with {@code sandboxId}; 0 from an older agent
 * @param randomId drawn by the agent's JVM generator for this answer; empty from an older agent
 */
public record GuestInfo(
    String kernel,
    String hostname,
    String agentVersion,
    boolean pidNamespaceRoot,
    int protocolVersion,
    long agentPid,
    String virtualization,
    long bootTimeUnixMs,
    String sandboxId,
    long incarnation,
    String randomId) {

  /** Without the identity fields (an agent older than rebirth support). */
  public GuestInfo(String kernel, String hostname, String agentVersion, boolean pidNamespaceRoot, int protocolVersion,
      long agentPid, String virtualization, long bootTimeUnixMs) {
    this(kernel, hostname, agentVersion, pidNamespaceRoot, protocolVersion, agentPid, virtualization, bootTimeUnixMs,
        "", 0, "");
  }
}
