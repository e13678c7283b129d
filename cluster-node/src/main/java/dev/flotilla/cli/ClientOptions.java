package dev.flotilla.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import picocli.CommandLine.Option;

/**
 * {@code --endpoint}, {@code --token}, {@code --token-file}, {@code --tls}, {@code --ca}, {@code --cert}, {@code --key}
 * (and {@link CallTimeout}): accepted before the command name (on
 * {@code flotilla}) and after it; the one nearer the end wins, then the environment, then defaults.
 */
public final class ClientOptions {
  public static final String DEFAULT_ENDPOINT = "127.0.0.1:7070";
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);
  static final String TOKEN_FILE = "default.token";
  static final String ADMIN_TOKEN_FILE = "admin.token";

  @Option(names = "--endpoint", paramLabel = "HOST:PORT",
      description = "Node to talk to (env FLOTILLA_ENDPOINT; default " + DEFAULT_ENDPOINT + ").")
  String endpoint;

  @Option(names = "--token", paramLabel = "TOKEN",
      description = "Bearer token (env FLOTILLA_TOKEN; default: the embedded node's "
          + "<data dir>/default.token, data dir from FLOTILLA_DATA_DIR or ./data).")
  String token;

  @Option(names = "--token-file", paramLabel = "FILE",
      description = "A file holding the bearer token, so that it is not in argv (env FLOTILLA_TOKEN_FILE).")
  Path tokenFile;

  @Option(names = "--tls", description = "Connect over TLS (env FLOTILLA_TLS=1); implied by --ca, --cert and --key.")
  boolean tls;

  @Option(names = "--ca", paramLabel = "FILE",
      description = "PEM CA certificate(s) the node's certificate must chain to (env FLOTILLA_CA; default: the JVM's trusted CAs).")
  Path ca;

  @Option(names = "--cert", paramLabel = "FILE",
      description = "PEM client certificate, for a node that asks for one (env FLOTILLA_CERT; needs --key).")
  Path cert;

  @Option(names = "--key", paramLabel = "FILE",
      description = "PEM unencrypted private key of --cert (env FLOTILLA_KEY).")
  Path key;

  /** TLS to the node: {@code ca} null trusts the JVM's CAs; {@code cert}/{@code key} both null sends no client certificate. */
  public record Tls(Path ca, Path cert, Path key) {}

  /** Where the token came from, for the hint printed when the node rejects it; {@code tls} null is plaintext. */
  public record Connection(Endpoint endpoint, String token, String tokenSource, Duration timeout, Tls tls) {
    public Connection(Endpoint endpoint, String token, String tokenSource, Duration timeout) {
      this(endpoint, token, tokenSource, timeout, null);
    }

    public Connection withTimeout(Duration t) {
      return new Connection(endpoint, token, tokenSource, t, tls);
    }
  }

  /** Resolves this command's options over the outer ones ({@code outer} may be null), with the default deadline. */
  public Connection resolve(ClientOptions outer, CliContext ctx) {
    return resolve(outer, DEFAULT_TIMEOUT, ctx, TOKEN_FILE);
  }

  /**
   * @param to the deadline per call (see {@link CallTimeout})
   * @param ownTokenFile the token file in the node's data dir used when no token is given:
   *     {@code default.token}, or {@code admin.token} for the administration commands
   */
  public Connection resolve(ClientOptions outer, Duration to, CliContext ctx, String ownTokenFile) {
    Endpoint ep = Endpoint.parse(first(endpoint, outer == null ? null : outer.endpoint,
        ctx.env(CliContext.ENV_ENDPOINT), DEFAULT_ENDPOINT));
    Tls tls = tls(outer, ctx);
    String tok = first(token, outer == null ? null : outer.token);
    if (tok != null) return new Connection(ep, tok, "sent the token from --token", to, tls);
    Path given = tokenFile != null ? tokenFile : outer != null ? outer.tokenFile : null;
    if (given != null) return new Connection(ep, requiredToken(ctx.workingDir().resolve(given), "--token-file"),
        "sent the token in " + given, to, tls);
    tok = ctx.env(CliContext.ENV_TOKEN);
    if (tok != null) return new Connection(ep, tok, "sent the token from FLOTILLA_TOKEN", to, tls);
    String envFile = ctx.env(CliContext.ENV_TOKEN_FILE);
    if (envFile != null) return new Connection(ep, requiredToken(ctx.workingDir().resolve(envFile), "FLOTILLA_TOKEN_FILE"),
        "sent the token in " + envFile + " (FLOTILLA_TOKEN_FILE)", to, tls);
    Path file = tokenFile(ctx, ownTokenFile);
    tok = readToken(file);
    if (tok != null) return new Connection(ep, tok, "sent the token in " + file, to, tls);
    return new Connection(ep, null,
        "no token: none given with --token, --token-file, FLOTILLA_TOKEN or FLOTILLA_TOKEN_FILE, and no " + file, to, tls);
  }

  /** Flags over the outer flags over the environment; null: plaintext. */
  private Tls tls(ClientOptions outer, CliContext ctx) {
    Path caFile = firstPath(ca, outer == null ? null : outer.ca, ctx.env(CliContext.ENV_CA), ctx);
    Path certFile = firstPath(cert, outer == null ? null : outer.cert, ctx.env(CliContext.ENV_CERT), ctx);
    Path keyFile = firstPath(key, outer == null ? null : outer.key, ctx.env(CliContext.ENV_KEY), ctx);
    String envTls = ctx.env(CliContext.ENV_TLS);
    boolean envOn = envTls != null && !envTls.equalsIgnoreCase("0") && !envTls.equalsIgnoreCase("false")
        && !envTls.equalsIgnoreCase("off") && !envTls.equalsIgnoreCase("no");
    boolean on = tls || (outer != null && outer.tls) || envOn || caFile != null || certFile != null || keyFile != null;
    if (!on) return null;
    if ((certFile == null) != (keyFile == null)) {
      throw new CliFailure(ExitCodes.USAGE, "a client certificate needs both --cert and --key (or FLOTILLA_CERT and FLOTILLA_KEY)");
    }
    return new Tls(caFile, certFile, keyFile);
  }

  private static Path firstPath(Path flag, Path outerFlag, String env, CliContext ctx) {
    Path p = flag != null ? flag : outerFlag != null ? outerFlag : env != null ? Path.of(env) : null;
    return p == null ? null : ctx.workingDir().resolve(p).normalize();
  }

  /** A token file that was asked for: it must exist and hold a token. */
  private static String requiredToken(Path file, String from) {
    if (!Files.exists(file)) throw new CliFailure(ExitCodes.USAGE, from + ": " + file + " does not exist");
    String t;
    try {
      if (Files.size(file) > 8192) throw new CliFailure(ExitCodes.USAGE, from + " " + file + " is larger than a token can be");
      t = readToken(file);
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.USAGE, from + ": cannot read " + file + ": " + e.getMessage());
    }
    if (t == null) throw new CliFailure(ExitCodes.USAGE, from + ": " + file + " is empty");
    return t;
  }

  static Path tokenFile(CliContext ctx) {
    return tokenFile(ctx, TOKEN_FILE);
  }

  static Path tokenFile(CliContext ctx, String name) {
    String dir = ctx.env(CliContext.ENV_DATA_DIR);
    return ctx.workingDir().resolve(dir != null ? dir : "data").resolve(name).normalize();
  }

  private static String readToken(Path file) {
    try {
      String t = Files.readString(file, StandardCharsets.UTF_8).strip();
      return t.isEmpty() ? null : t;
    } catch (NoSuchFileException e) {
      return null;
    } catch (IOException e) {
      throw new CliFailure(ExitCodes.REQUEST_FAILED, "cannot read the token file " + file + ": "
          + e.getMessage());
    }
  }

  private static String first(String... values) {
    for (String v : values) {
      if (v != null && !v.isBlank()) return v;
    }
    return null;
  }
}
