package dev.flotilla.images;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * How to authenticate to one registry: a user and password (sent as Basic, or to the registry's
 * token service in the Bearer token dance), or a bearer token read from a file at each use so an
 * operator can rotate it without a restart.
 */
public sealed interface Credentials {

  static Credentials basic(String user, String password) {
    return new Basic(user, password);
  }

  static Credentials bearerTokenFile(Path file) {
    return new TokenFile(file);
  }

  /** A bearer token given with the request (a tenant's own, held for one pull only). */
  static Credentials bearerToken(String token) {
    return new Token(token);
  }

  record Basic(String user, String password) implements Credentials {
    public Basic {
      Objects.requireNonNull(user, "user");
      Objects.requireNonNull(password, "password");
    }

    @Override
    public String toString() {
      return "Basic[" + user + ", password hidden]";
    }
  }

  record Token(String token) implements Credentials {
    public Token {
      Objects.requireNonNull(token, "token");
      if (token.isEmpty() || token.chars().anyMatch(c -> c < 0x21 || c > 0x7e)) {
        throw new ImageException("the bearer token is empty or has characters a header cannot carry");
      }
    }

    @Override
    public String toString() {
      return "Token[hidden]";
    }
  }

  record TokenFile(Path file) implements Credentials {
    public TokenFile {
      Objects.requireNonNull(file, "file");
    }

    public String token() {
      try {
        String t = Files.readString(file, StandardCharsets.UTF_8).strip();
        if (t.isEmpty() || t.chars().anyMatch(c -> c < 0x21 || c > 0x7e)) {
          throw new ImageException("the bearer token in " + file + " is empty or has characters a header cannot carry");
        }
        return t;
      } catch (IOException e) {
        throw new ImageException("cannot read the registry token file " + file + ": " + e.getMessage(), e);
      }
    }
  }
}
