package dev.flotilla.cli;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import picocli.CommandLine.Option;

/**
 * {@code --endpoint}, {@code --token}, {@code --timeout}: accepted before the command name (on
 * {@code flotilla}) and after it; the one nearer the end wins, then the environment, then defaults.
 */
public final class ClientOptions {
  public static final String DEFAULT_ENDPOINT = "127.0.0.1:7070";
  public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(30);
  static final String TOKEN_FILE = "default.token";

  @Option(names = "--endpoint", paramLabel = "HOST:PORT",
      description = "Node to talk to (env FLOTILLA_ENDPOINT; default " + DEFAULT_ENDPOINT + ").")
  String endpoint;

  @Option(names = "--token", paramLabel = "TOKEN",
      description = "Bearer token (env FLOTILLA_TOKEN; default: the embedded node's "
          + "<data dir>/default.token, data dir from FLOTILLA_DATA_DIR or ./data).")
  String token;

  @Option(names = "--timeout", paramLabel = "DURATION",
      converter = ArgParsers.DurationConverter.class,
      description = "Deadline per call, e.g. 500ms, 10s, 2m (default 30s). For exec and watch it "
          + "only bounds connecting.")
  Duration timeout;

  /** Where the token came from, for the hint printed when the node rejects it. */
  public record Connection(Endpoint endpoint, String token, String tokenSource, Duration timeout) {}

  /** Resolves this command's options over the outer ones ({@code outer} may be null). */
  public Connection resolve(ClientOptions outer, CliContext ctx) {
    Endpoint ep = Endpoint.parse(first(endpoint, outer == null ? null : outer.endpoint,
        ctx.env(CliContext.ENV_ENDPOINT), DEFAULT_ENDPOINT));
    Duration to = timeout != null ? timeout
        : outer != null && outer.timeout != null ? outer.timeout : DEFAULT_TIMEOUT;
    String tok = first(token, outer == null ? null : outer.token);
    if (tok != null) return new Connection(ep, tok, "sent the token from --token", to);
    tok = ctx.env(CliContext.ENV_TOKEN);
    if (tok != null) return new Connection(ep, tok, "sent the token from FLOTILLA_TOKEN", to);
    Path file = tokenFile(ctx);
    tok = readToken(file);
    if (tok != null) return new Connection(ep, tok, "sent the token in " + file, to);
    return new Connection(ep, null,
        "no token: none given with --token or FLOTILLA_TOKEN, and no " + file, to);
  }

  static Path tokenFile(CliContext ctx) {
    String dir = ctx.env(CliContext.ENV_DATA_DIR);
    return ctx.workingDir().resolve(dir != null ? dir : "data").resolve(TOKEN_FILE).normalize();
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
