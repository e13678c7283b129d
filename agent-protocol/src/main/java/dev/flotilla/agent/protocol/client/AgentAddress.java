package dev.flotilla.agent.protocol.client;

import java.nio.file.Path;
import java.util.Objects;

/**
 * Where the host reaches a guest agent. Today always a host-side Unix socket: the process driver's
 * agent listens on it directly, QEMU bridges it to the guest's virtio-serial port.
 */
public record AgentAddress(Path unixSocket) {
  public AgentAddress {
    Objects.requireNonNull(unixSocket, "unixSocket");
  }

  /** Parses {@code unix:/path/to/agent.sock}. */
  public static AgentAddress parse(String s) {
    if (s.startsWith("unix:")) return new AgentAddress(Path.of(s.substring("unix:".length())));
    throw new IllegalArgumentException("unsupported agent address '" + s + "': expected unix:/path/to/socket");
  }

  @Override
  public String toString() {
    return "unix:" + unixSocket;
  }
}
