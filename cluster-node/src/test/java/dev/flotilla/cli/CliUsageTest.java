package dev.flotilla.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Command lines that must fail before anything is sent: one line, exit 2, no stack trace. */
class CliUsageTest {
  @TempDir Path dir;

  private TestCli.Result run(String args) {
    // an endpoint nobody listens on: a usage error must be found before connecting
    return new TestCli(dir).env(CliContext.ENV_ENDPOINT, "127.0.0.1:1")
        .run(args.isEmpty() ? new String[0] : args.split(" "));
  }

  @ParameterizedTest
  @CsvSource(delimiter = '|', value = {
      "create --cpus 0           | flotilla: invalid value for option '--cpus': '0' is not a whole number above zero (see `flotilla create --help`)",
      "create --memory lots      | flotilla: invalid value for option '--memory': 'lots' is not a whole number above zero (see `flotilla create --help`)",
      "create --restart sometimes| flotilla: invalid value for option '--restart': 'sometimes' is not a restart policy (use always, on-failure or never) (see `flotilla create --help`)",
      "create --label app        | flotilla: label 'app' must be key=value (see `flotilla create --help`)",
      "create --request-id a/b   | flotilla: invalid value for option '--request-id': request id 'a/b' must be 1 to 128 characters of A-Z a-z 0-9 . _ - (see `flotilla create --help`)",
      "ls --label a=1 --label a=2| flotilla: label 'a' is given more than once (see `flotilla ls --help`)",
      "ls -o yaml                | flotilla: invalid value for option '--output': 'yaml' is not an output format (use json, or leave -o out) (see `flotilla ls --help`)",
      "get                       | flotilla: missing required parameter: 'ID' (see `flotilla get --help`)",
      "exec sb-1                 | flotilla: missing required parameter: 'CMD' (see `flotilla exec --help`)",
      "exec sb-1 ls -la          | flotilla: unknown option: '-la' (put the command after `--`: flotilla exec ID -- CMD ARGS...)",
      "exec -e X sb-1 -- true    | flotilla: --env 'X' must be key=value (see `flotilla exec --help`)",
      "frobnicate                | flotilla: unknown command 'frobnicate' (see `flotilla --help`)",
      "ls --timeout soon         | flotilla: invalid value for option '--timeout': 'soon' is not a duration (use e.g. 500ms, 10s, 2m, 1h, 7d) (see `flotilla ls --help`)",
      "ls --endpoint host:port   | flotilla: endpoint 'host:port' must be HOST:PORT, e.g. 127.0.0.1:7070",
      "image rm                  | flotilla: missing required parameter: 'REF' (see `flotilla image rm --help`)",
      "image pull busybox --username u | flotilla: --username and --password-stdin go together (see `flotilla image pull --help`)",
      "image pull busybox --password-stdin | flotilla: --username and --password-stdin go together (see `flotilla image pull --help`)",
      "image pull busybox --username u --password-stdin --registry-token-file t | flotilla: give either --username with --password-stdin, or --registry-token-file, not both (see `flotilla image pull --help`)",
      "image import /no/such.tar | flotilla: /no/such.tar is not a readable file (see `flotilla image import --help`)",
      "image ls -o yaml          | flotilla: invalid value for option '--output': 'yaml' is not an output format (use json, or leave -o out) (see `flotilla image ls --help`)",
      "port-forward sb-1         | flotilla: missing required parameter: '[LOCAL:]REMOTE' (see `flotilla port-forward --help`)",
      "port-forward sb-1 80:0    | flotilla: '80:0' is not a port mapping: give LOCAL:REMOTE, PORT or :REMOTE, the remote port 1-65535 and the local one 0-65535 (0: a free one) (see `flotilla port-forward --help`)",
      "port-forward sb-1 http    | flotilla: 'http' is not a port mapping: give LOCAL:REMOTE, PORT or :REMOTE, the remote port 1-65535 and the local one 0-65535 (0: a free one) (see `flotilla port-forward --help`)",
      "port-forward sb-1 70000   | flotilla: '70000' is not a port mapping: give LOCAL:REMOTE, PORT or :REMOTE, the remote port 1-65535 and the local one 0-65535 (0: a free one) (see `flotilla port-forward --help`)",
      "port-forward sb-1 8080:80 8080:81 | flotilla: local port 8080 is given twice (see `flotilla port-forward --help`)",
  })
  void usage_errors_are_one_line_and_exit_2(String args, String line) {
    TestCli.Result r = run(args.strip());

    assertEquals(ExitCodes.USAGE, r.exitCode(), r.err());
    assertEquals(line + "\n", r.err());
    assertEquals("", r.out());
  }

  @Test
  void tls_and_token_file_mistakes_are_usage_errors() throws Exception {
    TestCli.Result half = run("ls --tls --cert c.pem");
    assertEquals(ExitCodes.USAGE, half.exitCode(), half.err());
    assertEquals("flotilla: a client certificate needs both --cert and --key (or FLOTILLA_CERT and FLOTILLA_KEY)\n", half.err());

    TestCli.Result noCa = run("ls --ca missing-ca.pem");
    assertEquals(ExitCodes.USAGE, noCa.exitCode(), noCa.err());
    assertTrue(noCa.err().contains("missing-ca.pem: no such file"), noCa.err());

    TestCli.Result noFile = run("ls --token-file nope.token");
    assertEquals(ExitCodes.USAGE, noFile.exitCode(), noFile.err());
    assertTrue(noFile.err().contains("nope.token does not exist"), noFile.err());

    java.nio.file.Files.writeString(dir.resolve("empty.token"), "\n");
    TestCli.Result empty = new TestCli(dir).env(CliContext.ENV_ENDPOINT, "127.0.0.1:1")
        .env(CliContext.ENV_TOKEN_FILE, "empty.token").run("ls");
    assertEquals(ExitCodes.USAGE, empty.exitCode(), empty.err());
    assertTrue(empty.err().contains("FLOTILLA_TOKEN_FILE: " + dir.resolve("empty.token") + " is empty"), empty.err());
  }

  @Test
  void no_command_prints_the_commands_and_exits_2() {
    TestCli.Result r = run("");

    assertEquals(ExitCodes.USAGE, r.exitCode());
    for (String cmd : new String[] {"node", "create", "ls", "get", "exec", "stop", "start",
        "pause", "resume", "rm", "watch"}) {
      assertTrue(r.err().contains("\n  " + cmd + " "), cmd + " missing in:\n" + r.err());
    }
    assertFalse(r.err().contains("Exception"));
  }

  @Test
  void image_alone_prints_its_commands_and_exits_2() {
    TestCli.Result r = run("image");

    assertEquals(ExitCodes.USAGE, r.exitCode());
    for (String cmd : new String[] {"ls", "pull", "rm", "import"}) {
      assertTrue(r.err().contains("\n  " + cmd + " "), cmd + " missing in:\n" + r.err());
    }
    assertEquals("", r.out());
  }

  @Test
  void help_goes_to_stdout_and_exits_0() {
    TestCli.Result r = run("create --help");

    assertEquals(0, r.exitCode());
    assertTrue(r.out().contains("--request-id=ID"), r.out());
    assertTrue(r.out().contains("--endpoint=HOST:PORT"), r.out());
    assertEquals("", r.err());
  }
}
