package dev.flotilla.vm;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SeekableByteChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.Set;

/**
 * The per-incarnation secret a node shares with the guest agent it starts: the agent serves only
 * handshakes that carry it (HandshakeRequest.secret in agent.proto).
 *
 * <p>The node's copy lives in {@code <stateDir>/agent.secret}: node-only (0600 from creation,
 * the node's uid), read back when a restarted node adopts the VM. It never goes into a
 * {@link VmHandle} (handles are copied into the cluster journal) and is never logged. Format of
 * both the node's file and the agent's hand-off file: the secret in lower-case hexadecimal
 * followed by a newline, as the guest agent's {@code --secret-file} expects.
 */
public final class AgentSecrets {

  public static final String FILE_NAME = "agent.secret";
  /** The agent's copy, for {@code --secret-file}; the agent deletes it once read. */
  public static final String HANDOFF_FILE_NAME = "agent.secret.handoff";
  public static final int BYTES = 32;
  private static final SecureRandom RANDOM = new SecureRandom();

  private AgentSecrets() {}

  public static byte[] generate() {
    byte[] s = new byte[BYTES];
    RANDOM.nextBytes(s);
    return s;
  }

  /** Generates a secret and stores the node's copy in {@code stateDir}; returns the secret. */
  public static byte[] create(Path stateDir) throws IOException {
    byte[] s = generate();
    write(stateDir, s);
    return s;
  }

  /** Stores the node's copy in {@code stateDir} (replacing any). */
  public static void write(Path stateDir, byte[] secret) throws IOException {
    NodeOnlyFiles.writePrivateFile(stateDir.resolve(FILE_NAME), encode(secret));
  }

  /**
   * Reads the node's copy back (adopting a VM after a restart). Only a file the node wrote
   * counts: a regular file, the node's uid, no access for group or others, the right length.
   *
   * @throws java.nio.file.NoSuchFileException if there is none (a VM started before secrets existed)
   * @throws IOException if the file is not trustworthy or malformed; the secret must then not be used
   */
  public static byte[] read(Path stateDir) throws IOException {
    Path file = stateDir.resolve(FILE_NAME);
    byte[] raw = NodeOnlyFiles.readNodeFile(file, 4 * BYTES, false);
    byte[] s;
    try {
      s = HexFormat.of().parseHex(new String(raw, StandardCharsets.US_ASCII).strip());
    } catch (IllegalArgumentException e) {
      throw new IOException(file + " does not hold a hexadecimal agent secret");
    }
    if (s.length != BYTES) throw new IOException(file + " holds " + s.length + " bytes, not the " + BYTES + " of an agent secret");
    return s;
  }

  /**
   * For a driver adopting a VM: the node's copy, or null when there is none or it is not
   * trustworthy (said in the log, without the secret). Without it the handshake goes out with no
   * secret: an agent started with one refuses it, and the sandbox starts a new incarnation.
   */
  public static byte[] readIfTrusted(Path stateDir) {
    try {
      return read(stateDir);
    } catch (java.nio.file.NoSuchFileException e) {
      return null; // started before agent secrets existed: its agent expects none
    } catch (IOException e) {
      org.slf4j.LoggerFactory.getLogger(AgentSecrets.class).warn("not using the agent secret in {}: {}", stateDir, e.getMessage());
      return null;
    }
  }

  /**
   * Writes the agent's copy for {@code --secret-file}: 0600 from creation, then handed to
   * {@code agentUid} (the uid the agent runs as) when that is not the node's. Replaces any file or
   * link of that name without following it.
   *
   * @return the file
   */
  public static Path writeHandoff(Path stateDir, byte[] secret, long agentUid) throws IOException {
    Path file = stateDir.resolve(HANDOFF_FILE_NAME);
    Files.deleteIfExists(file);
    try (SeekableByteChannel ch = Files.newByteChannel(file,
        Set.<java.nio.file.OpenOption>of(StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE, LinkOption.NOFOLLOW_LINKS),
        PosixFilePermissions.asFileAttribute(NodeOnlyFiles.FILE_MODE))) {
      ByteBuffer b = ByteBuffer.wrap(encode(secret));
      while (b.hasRemaining()) ch.write(b);
    }
    if (agentUid != NodeOnlyFiles.nodeUid()) {
      Files.setAttribute(file, "unix:uid", (int) agentUid, LinkOption.NOFOLLOW_LINKS);
      Files.setAttribute(file, "unix:gid", (int) agentUid, LinkOption.NOFOLLOW_LINKS);
    }
    return file;
  }

  private static byte[] encode(byte[] secret) {
    if (secret.length != BYTES) throw new IllegalArgumentException("an agent secret has " + BYTES + " bytes, not " + secret.length);
    return (HexFormat.of().formatHex(secret) + "\n").getBytes(StandardCharsets.US_ASCII);
  }
}
