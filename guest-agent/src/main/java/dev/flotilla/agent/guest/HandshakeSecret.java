package dev.flotilla.agent.guest;

import dev.flotilla.agent.protocol.v1.Error;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;

/**
 * The secret a handshake must carry. Sandbox id and incarnation can be guessed from paths; the
 * per-incarnation secret the node generated cannot, so whoever else reaches the agent's socket
 * cannot drive it.
 *
 * <p>Three modes: a secret known from the start ({@code --secret-file}); trust on first use
 * ({@code --secret-on-first-handshake}), for channels only the node can reach (a QEMU guest's
 * virtio-serial port), where the first handshake that carries a secret fixes it; and none (the
 * legacy agent, which checks sandbox id and incarnation only). Comparisons are constant-time.
 */
public final class HandshakeSecret {

  /** Shorter secrets are refused: they could be guessed. */
  public static final int MIN_BYTES = 16;

  private enum Mode { NONE, FIXED, FIRST_USE }

  private final Mode mode;
  private byte[] secret; // guarded by this; null until fixed in FIRST_USE mode

  private HandshakeSecret(Mode mode, byte[] secret) {
    this.mode = mode;
    this.secret = secret;
  }

  /** No secret: any handshake naming the right sandbox and incarnation is accepted. */
  public static HandshakeSecret none() {
    return new HandshakeSecret(Mode.NONE, null);
  }

  public static HandshakeSecret of(byte[] secret) {
    if (secret.length < MIN_BYTES) {
      throw new IllegalArgumentException("the agent secret has " + secret.length + " bytes; at least " + MIN_BYTES + " are needed");
    }
    return new HandshakeSecret(Mode.FIXED, secret.clone());
  }

  /** Trust on first use: the first handshake that carries a secret fixes it for good. */
  public static HandshakeSecret onFirstHandshake() {
    return new HandshakeSecret(Mode.FIRST_USE, null);
  }

  /**
   * Reads the secret from {@code file} (hexadecimal, at least {@link #MIN_BYTES} bytes, surrounding
   * white space ignored) and deletes the file: it sits in a directory the sandbox can see, and its
   * processes must not read it later. The deletion is best effort (the secret is read either way).
   */
  public static HandshakeSecret fromFile(Path file) throws IOException {
    String text = Files.readString(file, StandardCharsets.US_ASCII).strip();
    try {
      Files.deleteIfExists(file);
    } catch (IOException e) {
      System.err.println("flotilla-guest-agent: cannot delete the secret file " + file + ": " + e.getMessage());
    }
    byte[] bytes;
    try {
      bytes = HexFormat.of().parseHex(text);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("the secret file " + file + " does not hold hexadecimal digits only");
    }
    return of(bytes);
  }

  public boolean required() {
    return mode != Mode.NONE;
  }

  /**
   * Accepts {@code presented} or throws PERMISSION_DENIED. In first-use mode, before a secret is
   * fixed, any secret of at least {@link #MIN_BYTES} passes: {@link #accepted} fixes it once the
   * rest of the handshake has been accepted too (a stale one must not fix it).
   */
  public synchronized void check(byte[] presented) {
    if (mode == Mode.NONE) return;
    if (mode == Mode.FIRST_USE && secret == null) {
      if (presented.length < MIN_BYTES) throw refused("it carries no secret (or one under " + MIN_BYTES + " bytes)");
      return;
    }
    if (presented.length == 0) throw refused("it carries no secret");
    if (!MessageDigest.isEqual(secret, presented)) throw refused("its secret is wrong");
  }

  /** Whether this is a fixed secret (from the start or fixed by a first handshake) equal to {@code presented}. */
  public synchronized boolean matches(byte[] presented) {
    return secret != null && MessageDigest.isEqual(secret, presented);
  }

  /** The handshake that carried {@code presented} was accepted: in first-use mode the first one fixes the secret. */
  public synchronized void accepted(byte[] presented) {
    if (mode != Mode.FIRST_USE) return;
    if (secret == null) {
      secret = presented.clone();
      System.err.println("flotilla-guest-agent: secret fixed by the first handshake; later handshakes must carry it");
      return;
    }
    check(presented); // another connection fixed it meanwhile
  }

  private static AgentError refused(String why) {
    return new AgentError(Error.Code.PERMISSION_DENIED,
        "handshake refused: " + why + "; this agent serves only the node that started it. Closing the connection");
  }

  @Override
  public String toString() {
    return "HandshakeSecret(" + mode + ")";
  }
}
