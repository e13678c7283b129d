package dev.flotilla.node.auth;

import com.typesafe.config.Config;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Bearer tokens to tenants. Tokens are kept only as SHA-256 digests, so the lookup does not leak
 * a token's prefix through timing and a heap dump holds no usable token.
 */
public final class TokenAuth {
  public static final String DEFAULT_TENANT = "default";
  public static final String DEFAULT_TOKEN_FILE = "default.token";
  /** The administration identity (flotilla.auth.admin-tenants), with its own token file. */
  public static final String ADMIN_TENANT = "admin";
  public static final String ADMIN_TOKEN_FILE = "admin.token";

  private final Map<String, String> tenantByDigest;

  public TokenAuth(Map<String, String> tenantByToken) {
    Map<String, String> m = new HashMap<>();
    tenantByToken.forEach((token, tenant) -> m.put(digest(token), tenant));
    this.tenantByDigest = Map.copyOf(m);
  }

  /** From {@code flotilla.auth}, plus the default tenant's token file when that is on. */
  public static TokenAuth fromConfig(Config auth, Path dataDir) throws IOException {
    Map<String, String> tokens = new HashMap<>();
    for (Config t : auth.getConfigList("tokens")) {
      String tenant = t.getString("tenant");
      String token;
      if (t.hasPath("token-file")) {
        if (t.hasPath("token")) throw new IllegalArgumentException("flotilla.auth.tokens: tenant '" + tenant + "' has both token and token-file: give one");
        token = readTokenFile(Path.of(t.getString("token-file")));
      } else {
        token = t.getString("token");
      }
      if (token.length() < 16) throw new IllegalArgumentException("flotilla.auth.tokens: the token of tenant '" + tenant + "' is shorter than 16 characters");
      if (tenant.isBlank()) throw new IllegalArgumentException("flotilla.auth.tokens: a token has an empty tenant");
      tokens.put(token, tenant);
    }
    if (auth.getBoolean("default-token-file")) {
      tokens.put(defaultToken(dataDir), DEFAULT_TENANT);
    }
    if (auth.hasPath("admin-token-file") && auth.getBoolean("admin-token-file")) {
      tokens.put(adminToken(dataDir), ADMIN_TENANT);
    }
    return new TokenAuth(tokens);
  }

  /** A configured token file: owner-only (else the node does not start, and says the chmod), one non-empty token. */
  static String readTokenFile(Path file) throws IOException {
    if (!Files.isRegularFile(file)) throw new IOException("token file " + file + " does not exist (flotilla.auth.tokens)");
    requireOwnerOnly(file);
    String token = Files.readString(file, StandardCharsets.UTF_8).trim();
    if (token.isEmpty()) throw new IOException("token file " + file + " is empty");
    return token;
  }

  /**
   * Every other secret file the configuration names (registry credentials' {@code token-file} in
   * {@code flotilla.images.credentials}) is held to the same rule, before anything reads it.
   */
  public static void requireOwnerOnlySecretFiles(Config images) throws IOException {
    for (Config cred : images.getConfigList("credentials")) {
      if (cred.hasPath("token-file")) requireOwnerOnly(Path.of(cred.getString("token-file")));
    }
  }

  /** Reads {@code <dataDir>/default.token}, creating it (mode 0600) with a fresh token if missing. */
  public static String defaultToken(Path dataDir) throws IOException {
    return ownTokenFile(dataDir.resolve(DEFAULT_TOKEN_FILE));
  }

  /** Reads {@code <dataDir>/admin.token}, creating it (mode 0600) with a fresh token if missing. */
  public static String adminToken(Path dataDir) throws IOException {
    return ownTokenFile(dataDir.resolve(ADMIN_TOKEN_FILE));
  }

  /** A token file the node makes itself: created with a fresh token if missing, owner-only. */
  private static String ownTokenFile(Path file) throws IOException {
    Path dataDir = file.getParent();
    if (!Files.exists(file)) {
      Files.createDirectories(dataDir);
      byte[] raw = new byte[32];
      new SecureRandom().nextBytes(raw);
      String token = Base64.getUrlEncoder().withoutPadding().encodeToString(raw);
      try {
        Files.writeString(Files.createFile(file, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------"))),
            token + "\n", StandardCharsets.UTF_8);
      } catch (FileAlreadyExistsException raced) {
        // another process wrote it first: use theirs
      }
    }
    requireOwnerOnly(file);
    String token = Files.readString(file, StandardCharsets.UTF_8).trim();
    if (token.isEmpty()) throw new IOException(file + " is empty: delete it and restart the node to make a new token");
    return token;
  }

  /**
   * A token anyone else on the host can read is no secret: refuse to serve with it rather than
   * fix it quietly (it may have been copied already), and say how to fix it.
   */
  static void requireOwnerOnly(Path tokenFile) throws IOException {
    if (!Files.exists(tokenFile)) throw new IOException("token file " + tokenFile + " does not exist");
    Set<PosixFilePermission> perms = Files.getPosixFilePermissions(tokenFile);
    for (PosixFilePermission p : perms) {
      if (p != PosixFilePermission.OWNER_READ && p != PosixFilePermission.OWNER_WRITE && p != PosixFilePermission.OWNER_EXECUTE) {
        throw new IOException("token file " + tokenFile + " is accessible to group or others ("
            + PosixFilePermissions.toString(perms) + "): run `chmod 600 " + tokenFile + "` (and consider the token leaked:"
            + " delete the file and restart the node to make a new one)");
      }
    }
  }

  /** Every tenant a token of this node names. */
  public java.util.Set<String> tenants() {
    return java.util.Set.copyOf(tenantByDigest.values());
  }

  /** The tenant of an {@code authorization} header value, if it carries a known bearer token. */
  public Optional<String> tenantOf(String authorizationHeader) {
    if (authorizationHeader == null) return Optional.empty();
    String h = authorizationHeader.trim();
    if (!h.regionMatches(true, 0, "Bearer ", 0, 7)) return Optional.empty();
    return Optional.ofNullable(tenantByDigest.get(digest(h.substring(7).trim())));
  }

  private static String digest(String token) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(token.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
