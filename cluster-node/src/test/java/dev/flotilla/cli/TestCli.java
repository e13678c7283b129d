package dev.flotilla.cli;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/** Runs the real {@link Cli} in this JVM with a given environment and working directory. */
final class TestCli {
  final Map<String, String> env = new HashMap<>();
  final Path workingDir;
  final ByteArrayOutputStream out = new ByteArrayOutputStream();
  final ByteArrayOutputStream err = new ByteArrayOutputStream();

  TestCli(Path workingDir) {
    this.workingDir = workingDir;
  }

  private boolean stdoutClosed;
  private java.io.InputStream stdin = System.in;

  /** The CLI's stdin (default: this JVM's). */
  TestCli stdin(String text) {
    stdin = new java.io.ByteArrayInputStream(text.getBytes(StandardCharsets.UTF_8));
    return this;
  }

  /** stdout behaves like a pipe whose reader has exited. */
  TestCli stdoutClosed() {
    stdoutClosed = true;
    return this;
  }

  TestCli env(String name, String value) {
    env.put(name, value);
    return this;
  }

  record Result(int exitCode, String out, String err) {}

  Result run(String... args) {
    int code = new Cli(new CliContext(Map.copyOf(env), workingDir,
        stdoutClosed ? new PrintStream(new OutputStream() {
          @Override
          public void write(int b) throws IOException {
            throw new IOException("Broken pipe");
          }
        }, true, StandardCharsets.UTF_8) : new PrintStream(out, true, StandardCharsets.UTF_8),
        new PrintStream(err, true, StandardCharsets.UTF_8), stdin)).run(args);
    return new Result(code, out(), err());
  }

  /** What has been printed so far: safe to call while a command runs on another thread. */
  String out() {
    return out.toString(StandardCharsets.UTF_8);
  }

  String err() {
    return err.toString(StandardCharsets.UTF_8);
  }
}
