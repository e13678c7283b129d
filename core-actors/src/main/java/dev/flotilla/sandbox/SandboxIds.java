package dev.flotilla.sandbox;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.UUID;
import java.util.regex.Pattern;

/**
 * Sandbox ids. With a client request id the id is derived from (tenant, request id), so a
 * retried create reaches the same entity wherever it is retried, without any index to keep.
 */
public final class SandboxIds {
  private SandboxIds() {}

  public static final Pattern REQUEST_ID = Pattern.compile("[A-Za-z0-9._-]{1,128}");
  public static final Pattern SANDBOX_ID = Pattern.compile("sb-[0-9a-f]{16}");

  public static String forRequest(String tenant, String requestId) {
    try {
      byte[] digest = MessageDigest.getInstance("SHA-256")
          .digest((tenant + "\u0000" + requestId).getBytes(StandardCharsets.UTF_8));
      return "sb-" + HexFormat.of().formatHex(digest, 0, 8);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is part of every JDK", e);
    }
  }

  public static String random() {
    UUID u = UUID.randomUUID();
    return "sb-" + String.format("%016x", u.getMostSignificantBits() ^ u.getLeastSignificantBits());
  }

  public static boolean isValid(String id) {
    return id != null && SANDBOX_ID.matcher(id).matches();
  }
}
