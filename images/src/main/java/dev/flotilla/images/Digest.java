package dev.flotilla.images;

import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.regex.Pattern;

/**
 * A content digest, {@code sha256:<64 lowercase hex>}. Only sha256 is accepted: it is what every
 * registry and tool in use produces, and one algorithm means one blob path per content.
 */
public record Digest(String hex) implements Comparable<Digest> {

  public static final String ALGORITHM = "sha256";
  private static final Pattern HEX = Pattern.compile("[a-f0-9]{64}");

  public Digest {
    if (hex == null || !HEX.matcher(hex).matches()) {
      throw new ImageException("not a sha256 digest: '" + hex + "' (expected 64 lowercase hex characters)");
    }
  }

  /** Parses {@code sha256:<hex>}; anything else is refused with what was wrong. */
  public static Digest parse(String s) {
    if (s == null || s.isEmpty()) {
      throw new ImageException("empty digest (expected sha256:<64 lowercase hex>)");
    }
    int colon = s.indexOf(':');
    if (colon < 0) {
      throw new ImageException("digest '" + s + "' has no algorithm (expected sha256:<64 lowercase hex>)");
    }
    String alg = s.substring(0, colon);
    String enc = s.substring(colon + 1);
    if (!ALGORITHM.equals(alg)) {
      throw new ImageException("digest algorithm '" + alg + "' is not supported, only sha256 (in '" + s + "')");
    }
    if (!HEX.matcher(enc).matches()) {
      throw new ImageException(
          "digest '" + s + "' must be sha256: followed by exactly 64 lowercase hex characters (got "
              + enc.length() + " characters)");
    }
    return new Digest(enc);
  }

  public static boolean isDigest(String s) {
    return s != null && s.startsWith(ALGORITHM + ":") && HEX.matcher(s.substring(ALGORITHM.length() + 1)).matches();
  }

  public static Digest of(byte[] content) {
    return new Digest(HexFormat.of().formatHex(newHasher().digest(content)));
  }

  public static Digest fromHasher(MessageDigest hasher) {
    return new Digest(HexFormat.of().formatHex(hasher.digest()));
  }

  public static MessageDigest newHasher() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("SHA-256 is mandatory in every JDK", e);
    }
  }

  /** A short form for logs. */
  public String shortHex() {
    return hex.substring(0, 12);
  }

  @Override
  public String toString() {
    return ALGORITHM + ":" + hex;
  }

  @Override
  public int compareTo(Digest o) {
    return hex.compareTo(o.hex);
  }
}
