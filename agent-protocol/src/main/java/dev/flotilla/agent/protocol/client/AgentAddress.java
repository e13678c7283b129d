package dev.flotilla.agent.protocol.client;

import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Objects;
import java.util.Optional;
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
 * {@link #rebirth()}: the agent behind the socket is a clone of a template VM and still has the
 * template's identity; the client's handshakes make it this sandbox (see {@link Rebirth}).
 *
 * <p>Secrets are copied in and out and never appear in {@link #toString()}: addresses end up in
 * log lines and error messages.
 */
public final class AgentAddress {

  /** An agent refuses shorter secrets; see HandshakeRequest.secret in agent.proto. */
  public static final int MIN_SECRET_BYTES = 16;

  private final Path unixSocket;
  private final OptionalLong expectedPeerUid;
  private final byte[] secret;
  private final Rebirth rebirth; // null: the agent already is this sandbox

  /**
   * The template identity a cloned VM's agent still has (HandshakeRequest.rebirth in agent.proto).
   * A client for an address with one sends these as the handshake's credentials and asks the agent
   * to take the identity named in the handshake, with the address's secret and {@code hostname}.
   *
   * @param fromSandboxId the template's sandbox id, which the clone's agent serves until reborn
   * @param fromIncarnation the template's incarnation
   * @param fromSecret the secret the template's agent holds (copied; at least {@link #MIN_SECRET_BYTES})
   * @param hostname the clone's hostname (1-63 of {@code [A-Za-z0-9-]}, not starting or ending with '-')
   */
  public record Rebirth(String fromSandboxId, long fromIncarnation, byte[] fromSecret, String hostname) {
    public Rebirth {
      Objects.requireNonNull(fromSandboxId, "fromSandboxId");
      Objects.requireNonNull(fromSecret, "fromSecret");
      Objects.requireNonNull(hostname, "hostname");
      if (fromSecret.length < MIN_SECRET_BYTES) {
        throw new IllegalArgumentException("the template's secret has at least " + MIN_SECRET_BYTES + " bytes, not "
            + fromSecret.length);
      }
      if (!hostname.matches("[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")) {
        throw new IllegalArgumentException("hostname '" + hostname + "' must be 1-63 letters, digits and '-',"
            + " not starting or ending with '-'");
      }
      fromSecret = fromSecret.clone();
    }

    /** A copy of the template's secret. */
    @Override
    public byte[] fromSecret() {
      return fromSecret.clone();
    }

    @Override
    public boolean equals(Object o) {
      return o instanceof Rebirth r && fromSandboxId.equals(r.fromSandboxId) && fromIncarnation == r.fromIncarnation
          && hostname.equals(r.hostname) && MessageDigest.isEqual(fromSecret, r.fromSecret);
    }

    @Override
    public int hashCode() {
      return Objects.hash(fromSandboxId, fromIncarnation, hostname); // not of the secret
    }

    @Override
    public String toString() {
      return "Rebirth[from " + fromSandboxId + " incarnation " + fromIncarnation + ", hostname " + hostname + "]";
    }
  }

  /** A socket with no peer check and no secret: the legacy handshake. */
  public AgentAddress(Path unixSocket) {
    this(unixSocket, OptionalLong.empty(), null);
  }

  /**
   * @param expectedPeerUid the uid that must hold the socket's other end; empty: any
   * @param secret the agent's secret (copied; at least {@link #MIN_SECRET_BYTES}); null or empty: none
   */
  public AgentAddress(Path unixSocket, OptionalLong expectedPeerUid, byte[] secret) {
    this(unixSocket, expectedPeerUid, secret, null);
  }

  private AgentAddress(Path unixSocket, OptionalLong expectedPeerUid, byte[] secret, Rebirth rebirth) {
    this.unixSocket = Objects.requireNonNull(unixSocket, "unixSocket");
    this.expectedPeerUid = Objects.requireNonNull(expectedPeerUid, "expectedPeerUid");
    if (expectedPeerUid.isPresent() && expectedPeerUid.getAsLong() < 0) {
      throw new IllegalArgumentException("expectedPeerUid must not be negative");
    }
    if (secret != null && secret.length > 0 && secret.length < MIN_SECRET_BYTES) {
      throw new IllegalArgumentException("an agent secret has at least " + MIN_SECRET_BYTES + " bytes, not " + secret.length);
    }
    this.secret = secret == null || secret.length == 0 ? null : secret.clone();
    if (rebirth != null && this.secret == null) {
      throw new IllegalArgumentException("a rebirth needs the clone's own secret: set one on the address first");
    }
    this.rebirth = rebirth;
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

  /** The template identity the agent still has, when it is a clone not yet reborn. */
  public Optional<Rebirth> rebirth() {
    return Optional.ofNullable(rebirth);
  }

  public AgentAddress withExpectedPeerUid(long uid) {
    return new AgentAddress(unixSocket, OptionalLong.of(uid), secret, rebirth);
  }

  public AgentAddress withSecret(byte[] newSecret) {
    return new AgentAddress(unixSocket, expectedPeerUid, newSecret, rebirth);
  }

  /**
   * This address for a clone whose agent still has the template's identity ({@code r}); null: an
   * agent that already is this sandbox. Needs the address's secret (the clone's own).
   */
  public AgentAddress withRebirth(Rebirth r) {
    return new AgentAddress(unixSocket, expectedPeerUid, secret, r);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof AgentAddress a
        && unixSocket.equals(a.unixSocket)
        && expectedPeerUid.equals(a.expectedPeerUid)
        && MessageDigest.isEqual(secret(), a.secret())
        && Objects.equals(rebirth, a.rebirth);
  }

  @Override
  public int hashCode() {
    // Not of the secret: a hash is a (weak) digest of it.
    return Objects.hash(unixSocket, expectedPeerUid, hasSecret(), rebirth);
  }

  @Override
  public String toString() {
    return "unix:" + unixSocket;
  }

  /** For diagnostics: the address plus whether a peer uid and a secret are set (never the secret). */
  public String describe() {
    return "unix:" + unixSocket
        + (expectedPeerUid.isPresent() ? " (peer uid " + expectedPeerUid.getAsLong() + ")" : "")
        + (hasSecret() ? " (with secret)" : " (no secret)")
        + (rebirth != null ? " (clone of " + rebirth.fromSandboxId() + " incarnation " + rebirth.fromIncarnation()
            + ", to be reborn)" : "");
  }
}
