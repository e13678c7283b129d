package dev.flotilla.agent.protocol.client;

import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Objects;
import java.util.OptionalLong;

/**
 * Where the host reaches a guest agent, and what it needs to trust the other end. Today always a
 * host-side Unix socket: the process driver's agent listens on it directly, QEMU bridges it to
 * the guest's virtio-serial port.
 *
 * <p>{@link #expectedPeerUid()}: when present, {@link AgentClients#connect} refuses a socket bound
 * by any other uid (a socket some other process planted where the agent's should be).
 * {@link #secret()}: the per-incarnation secret sent in every handshake, so that an agent serves
 * only the node that started it. Both are optional: without them the client behaves as before.
 *
 * <p>The secret is copied in and out and never appears in {@link #toString()}: addresses end up in
 * log lines and error messages.
 */
public final class AgentAddress {

  /** An agent refuses shorter secrets; see HandshakeRequest.secret in agent.proto. */
  public static final int MIN_SECRET_BYTES = 16;

  private final Path unixSocket;
  private final OptionalLong expectedPeerUid;
  private final byte[] secret;

  /** A socket with no peer check and no secret: the legacy handshake. */
  public AgentAddress(Path unixSocket) {
    this(unixSocket, OptionalLong.empty(), null);
  }

  /**
   * @param expectedPeerUid the uid that must hold the socket's other end; empty: any
   * @param secret the agent's secret (copied; at least {@link #MIN_SECRET_BYTES}); null or empty: none
   */
  public AgentAddress(Path unixSocket, OptionalLong expectedPeerUid, byte[] secret) {
    this.unixSocket = Objects.requireNonNull(unixSocket, "unixSocket");
    this.expectedPeerUid = Objects.requireNonNull(expectedPeerUid, "expectedPeerUid");
    if (expectedPeerUid.isPresent() && expectedPeerUid.getAsLong() < 0) {
      throw new IllegalArgumentException("expectedPeerUid must not be negative");
    }
    if (secret != null && secret.length > 0 && secret.length < MIN_SECRET_BYTES) {
      throw new IllegalArgumentException("an agent secret has at least " + MIN_SECRET_BYTES + " bytes, not " + secret.length);
    }
    this.secret = secret == null || secret.length == 0 ? null : secret.clone();
  }

  /** Parses {@code unix:/path/to/agent.sock}. */
  public static AgentAddress parse(String s) {
    if (s.startsWith("unix:")) return new AgentAddress(Path.of(s.substring("unix:".length())));
    throw new IllegalArgumentException("unsupported agent address '" + s + "': expected unix:/path/to/socket");
  }

  public Path unixSocket() {
    return unixSocket;
  }

  public OptionalLong expectedPeerUid() {
    return expectedPeerUid;
  }

  public boolean hasSecret() {
    return secret != null;
  }

  /** A copy of the secret; empty when there is none. */
  public byte[] secret() {
    return secret == null ? new byte[0] : secret.clone();
  }

  public AgentAddress withExpectedPeerUid(long uid) {
    return new AgentAddress(unixSocket, OptionalLong.of(uid), secret);
  }

  public AgentAddress withSecret(byte[] newSecret) {
    return new AgentAddress(unixSocket, expectedPeerUid, newSecret);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof AgentAddress a
        && unixSocket.equals(a.unixSocket)
        && expectedPeerUid.equals(a.expectedPeerUid)
        && MessageDigest.isEqual(secret(), a.secret());
  }

  @Override
  public int hashCode() {
    // Not of the secret: a hash is a (weak) digest of it.
    return Objects.hash(unixSocket, expectedPeerUid, hasSecret());
  }

  @Override
  public String toString() {
    return "unix:" + unixSocket;
  }

  /** For diagnostics: the address plus whether a peer uid and a secret are set (never the secret). */
  public String describe() {
    return "unix:" + unixSocket
        + (expectedPeerUid.isPresent() ? " (peer uid " + expectedPeerUid.getAsLong() + ")" : "")
        + (hasSecret() ? " (with secret)" : " (no secret)");
  }
}
