package dev.flotilla.cli;

import java.io.InputStream;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.Map;

/**
 * What the CLI reads from and writes to besides its arguments: the environment, the working
 * directory (for the default {@code ./data}), and the two output streams. Passed in so tests run
 * the real commands in-process.
 */
public record CliContext(Map<String, String> env, Path workingDir, PrintStream out, PrintStream err, InputStream in) {

  /** With the process's stdin (read only by {@code image pull --password-stdin}). */
  public CliContext(Map<String, String> env, Path workingDir, PrintStream out, PrintStream err) {
    this(env, workingDir, out, err, System.in);
  }

  public static final String ENV_ENDPOINT = "FLOTILLA_ENDPOINT";
  public static final String ENV_TOKEN = "FLOTILLA_TOKEN";
  public static final String ENV_TOKEN_FILE = "FLOTILLA_TOKEN_FILE";
  public static final String ENV_TLS = "FLOTILLA_TLS";
  public static final String ENV_CA = "FLOTILLA_CA";
  public static final String ENV_CERT = "FLOTILLA_CERT";
  public static final String ENV_KEY = "FLOTILLA_KEY";
  public static final String ENV_DATA_DIR = "FLOTILLA_DATA_DIR";
  public static final String ENV_DEBUG = "FLOTILLA_DEBUG";

  public String env(String name) {
    String v = env.get(name);
    return v == null || v.isBlank() ? null : v;
  }
}
