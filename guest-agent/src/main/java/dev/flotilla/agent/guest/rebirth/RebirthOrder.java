package dev.flotilla.agent.guest.rebirth;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.flotilla.agent.guest.AgentError;
import dev.flotilla.agent.protocol.v1.HandshakeRequest;
import dev.flotilla.agent.protocol.v1.Rebirth;
import dev.flotilla.agent.protocol.v1.Request;
import java.util.regex.Pattern;

/**
 * A checked {@code Rebirth} (agent.proto): the identity a clone's agent is to take and what it
 * applies first. Built only by {@link #of}, which refuses (INVALID_ARGUMENT, saying what to fix)
 * anything the agent must not apply.
 */
public record RebirthOrder(String sandboxId, long incarnation, byte[] secret, String hostname, long wallClockUnixMs,
    byte[] seed) {

  public static final int MIN_SECRET_BYTES = 16;
  public static final int MIN_SEED_BYTES = 32;
  /** The kernel takes at most a page of entropy per call; more is no better. */
  public static final int MAX_SEED_BYTES = 4096;
  /** RFC 1123 labels, as the guest's hostname is one. */
  private static final Pattern HOSTNAME = Pattern.compile("[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?");
  /** 2020-01-01: a host clock before that is not a clock. */
  static final long MIN_WALL_CLOCK_MS = 1_577_836_800_000L;

  /**
   * Runs, in a template's agent, what a clone's first handshake runs before its rebirth: a
   * handshake request that carries a rebirth is serialized, parsed back and checked, so that its
   * classes (the generated {@code Rebirth} parser and builder) are loaded and its code linked in
   * the memory every clone starts from. Under TCG a clone pays again for all code it runs, and most
   * for what its JVM must load, verify, link or compile: that took ~0.2 s of a clone's first
   * handshake. Nothing is applied. See {@link CloneSystem#prepare()}.
   */
  public static void prepare() {
    byte[] secret = new byte[MIN_SECRET_BYTES];
    byte[] seed = new byte[MIN_SEED_BYTES];
    Request sample = Request.newBuilder().setHandshake(HandshakeRequest.newBuilder()
        .setSandboxId("template").setIncarnation(1).setSecret(ByteString.copyFrom(secret))
        .setRebirth(Rebirth.newBuilder().setSandboxId("sb-prepare").setIncarnation(1).setSecret(ByteString.copyFrom(secret))
            .setHostname("fl-prepare").setWallClockUnixMs(MIN_WALL_CLOCK_MS).setSeed(ByteString.copyFrom(seed))))
        .build();
    try {
      Request parsed = Request.parseFrom(sample.toByteArray());
      RebirthOrder order = of(parsed.getHandshake().getRebirth());
      // toString links its string concatenation too (each call site bootstraps on its first use)
      if (!order.hostname().equals("fl-prepare") || order.toString().isEmpty()) throw new IllegalStateException(order.toString());
    } catch (InvalidProtocolBufferException e) {
      throw new IllegalStateException("a handshake this agent wrote does not parse: " + e.getMessage(), e);
    }
  }

  /** @throws AgentError INVALID_ARGUMENT naming the field to fix */
  public static RebirthOrder of(Rebirth r) {
    String id = r.getSandboxId();
    if (id.isEmpty() || id.length() > 256 || !printableWithoutSpaces(id)) {
      throw AgentError.invalid("rebirth refused: sandbox_id '" + printable(id) + "' must be 1-256 printable ASCII characters"
          + " without spaces");
    }
    if (r.getSecret().size() < MIN_SECRET_BYTES) {
      throw AgentError.invalid("rebirth refused: its secret has " + r.getSecret().size() + " bytes; at least "
          + MIN_SECRET_BYTES + " are needed");
    }
    if (!HOSTNAME.matcher(r.getHostname()).matches()) {
      throw AgentError.invalid("rebirth refused: hostname '" + printable(r.getHostname()) + "' must be 1-63 letters,"
          + " digits and '-', not starting or ending with '-'");
    }
    if (r.getWallClockUnixMs() < MIN_WALL_CLOCK_MS || r.getWallClockUnixMs() < 0) {
      throw AgentError.invalid("rebirth refused: wall_clock_unix_ms " + Long.toUnsignedString(r.getWallClockUnixMs())
          + " is not a plausible clock; send the host's System.currentTimeMillis()");
    }
    if (r.getSeed().size() < MIN_SEED_BYTES || r.getSeed().size() > MAX_SEED_BYTES) {
      throw AgentError.invalid("rebirth refused: its seed has " + r.getSeed().size() + " bytes; send " + MIN_SEED_BYTES
          + " to " + MAX_SEED_BYTES + " fresh random bytes");
    }
    return new RebirthOrder(id, r.getIncarnation(), r.getSecret().toByteArray(), r.getHostname(), r.getWallClockUnixMs(),
        r.getSeed().toByteArray());
  }

  private static boolean printableWithoutSpaces(String s) {
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c <= 0x20 || c >= 0x7f) return false;
    }
    return true;
  }

  private static String printable(String s) {
    String cut = s.length() > 80 ? s.substring(0, 80) + "…" : s;
    return cut.replaceAll("[^\\x20-\\x7e]", "?");
  }

  @Override
  public String toString() {
    return "RebirthOrder[" + sandboxId + " incarnation " + incarnation + ", hostname " + hostname + "]";
  }
}
