package dev.flotilla.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.ListTemplatesResponse;
import dev.flotilla.api.v1.RemoveTemplateRequest;
import dev.flotilla.api.v1.Template;
import dev.flotilla.api.v1.WarmTemplateRequest;
import io.grpc.Status;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * {@code flotilla template warm|ls|rm}: the command lines refused before anything is sent, and
 * against a fake TemplateService what goes on the wire, what is printed and the exit codes.
 */
class TemplateCliTest {
  static final Template BUSYBOX = Template.newBuilder().setId("tpl-1").setImage("docker.io/library/busybox:latest@sha256:" + "ab".repeat(32))
      .setImageDigest("sha256:" + "ab".repeat(32)).setCpus(1).setMemoryMib(256).setDiskMib(1024).setBytes(220_200_960)
      .setCreated(Timestamp.newBuilder().setSeconds(60)).setLastUsed(Timestamp.newBuilder().setSeconds(1_000)).setClones(3)
      .setNode("127.0.0.1:25520").setDriver("qemu").build();
  static final Template DEFAULT = Template.newBuilder().setId("tpl-2").setCpus(2).setMemoryMib(512).setDiskMib(1024)
      .setBytes(512).setNode("127.0.0.1:25520").setDriver("qemu").build();

  @TempDir Path dir;
  private TestSandboxServer server;

  @AfterEach
  void stop() {
    if (server != null) server.close();
  }

  private TestCli cli() {
    return new TestCli(dir).env(CliContext.ENV_ENDPOINT, server.endpoint()).env(CliContext.ENV_TOKEN, "t0k");
  }

  // ------------------------------------------------------------------------------ usage

  @ParameterizedTest
  @CsvSource(delimiter = '|', value = {
      "template rm                      | flotilla: missing required parameter: 'ID' (see `flotilla template rm --help`)",
      "template warm --cpus 0           | flotilla: invalid value for option '--cpus': '0' is not a whole number above zero (see `flotilla template warm --help`)",
      "template warm --memory lots      | flotilla: invalid value for option '--memory': 'lots' is not a whole number above zero (see `flotilla template warm --help`)",
      "template warm --image=           | flotilla: --image must not be empty (leave it out for the default image) (see `flotilla template warm --help`)",
      "template ls -o yaml              | flotilla: invalid value for option '--output': 'yaml' is not an output format (use json, or leave -o out) (see `flotilla template ls --help`)",
      "template clone                   | flotilla: unmatched argument at index 1: 'clone' (see `flotilla template --help`)",
  })
  void usage_errors_are_one_line_and_exit_2(String args, String line) {
    // an endpoint nobody listens on: a usage error must be found before connecting
    TestCli.Result r = new TestCli(dir).env(CliContext.ENV_ENDPOINT, "127.0.0.1:1").run(args.strip().split(" "));

    assertEquals(ExitCodes.USAGE, r.exitCode(), r.err());
    assertEquals(line + "\n", r.err());
    assertEquals("", r.out());
  }

  @Test
  void template_alone_prints_its_commands_and_exits_2() {
    TestCli.Result r = new TestCli(dir).env(CliContext.ENV_ENDPOINT, "127.0.0.1:1").run("template");

    assertEquals(ExitCodes.USAGE, r.exitCode());
    for (String cmd : new String[] {"warm", "ls", "rm"}) {
      assertTrue(r.err().contains("\n  " + cmd + " "), cmd + " missing in:\n" + r.err());
    }
    assertEquals("", r.out());
  }

  // ------------------------------------------------------------------------------ against a fake node

  @Test
  void warm_sends_image_and_size_waits_past_the_nodes_limit_and_prints_the_template() {
    server = new TestSandboxServer(TemplateServiceMethods.SERVICE)
        .unary(TemplateServiceMethods.WARM_TEMPLATE, req -> BUSYBOX).start();

    TestCli.Result r = cli().run("template", "warm", "--image", "busybox", "--cpus", "1", "--memory", "256");

    assertEquals(0, r.exitCode(), r.err());
    assertEquals("tpl-1 docker.io/library/busybox:latest@sha256:abababababab (1 vCPU, 256 MiB): 210.0 MiB on 127.0.0.1:25520\n",
        r.out());
    assertEquals(WarmTemplateRequest.newBuilder().setImage("busybox").setCpus(1).setMemoryMib(256).build(), server.requests.get(0));
    assertEquals("Bearer t0k", server.authorizations.get(0));
    long deadline = server.deadlines.get(0).orElseThrow().timeRemaining(TimeUnit.SECONDS);
    assertTrue(deadline > 600 && deadline <= 660, "warm deadline " + deadline + "s: must outlast the node's 10m warm-timeout");
  }

  @Test
  void warm_without_options_asks_for_the_defaults_and_prints_json_on_request() {
    server = new TestSandboxServer(TemplateServiceMethods.SERVICE)
        .unary(TemplateServiceMethods.WARM_TEMPLATE, req -> DEFAULT).start();

    TestCli.Result r = cli().run("template", "warm", "--timeout", "2m", "-o", "json");

    assertEquals(0, r.exitCode(), r.err());
    assertEquals(WarmTemplateRequest.getDefaultInstance(), server.requests.get(0));
    assertTrue(server.deadlines.get(0).orElseThrow().timeRemaining(TimeUnit.SECONDS) <= 120, "--timeout overrides");
    assertEquals("{\n  \"id\": \"tpl-2\",\n  \"image\": \"\",\n  \"imageDigest\": \"\",\n  \"cpus\": 2,\n  \"memoryMib\": 512,\n"
        + "  \"diskMib\": 1024,\n  \"bytes\": 512,\n  \"created\": null,\n  \"lastUsed\": null,\n  \"clones\": 0,\n"
        + "  \"node\": \"127.0.0.1:25520\",\n  \"driver\": \"qemu\"\n}\n", r.out());
  }

  @Test
  void warm_refused_by_the_node_prints_its_message_and_exits_1() {
    server = new TestSandboxServer(TemplateServiceMethods.SERVICE)
        .unary(TemplateServiceMethods.WARM_TEMPLATE, req -> {
          throw Status.FAILED_PRECONDITION.withDescription("this node has no driver 'qemu': no driver on this node has templates")
              .asRuntimeException();
        }).start();

    TestCli.Result r = cli().run("template", "warm", "--image", "busybox");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("flotilla: this node has no driver 'qemu': no driver on this node has templates\n", r.err());
    assertEquals("", r.out());
  }

  @Test
  void a_busy_node_is_unavailable_and_exits_3() {
    server = new TestSandboxServer(TemplateServiceMethods.SERVICE)
        .unary(TemplateServiceMethods.WARM_TEMPLATE, req -> {
          throw Status.UNAVAILABLE.withDescription("this node already warms 2 template(s) at once").asRuntimeException();
        }).start();

    TestCli.Result r = cli().run("template", "warm");

    assertEquals(ExitCodes.UNAVAILABLE, r.exitCode());
    assertEquals("flotilla: unavailable: this node already warms 2 template(s) at once (safe to retry)\n", r.err());
  }

  @Test
  void ls_prints_a_table_or_json() {
    server = new TestSandboxServer(TemplateServiceMethods.SERVICE)
        .unary(TemplateServiceMethods.LIST_TEMPLATES, req -> ListTemplatesResponse.newBuilder()
            .addTemplates(BUSYBOX).addTemplates(DEFAULT).build()).start();

    TestCli.Result table = cli().run("template", "ls");
    assertEquals(0, table.exitCode(), table.err());
    assertTrue(table.out().startsWith("ID     IMAGE                                                 CPUS  MEMORY   DISK      SIZE       CLONES  LAST USED"),
        table.out());
    assertEquals(3, table.out().lines().count(), table.out());

    TestCli.Result json = cli().run("template", "ls", "-o", "json");
    assertEquals(0, json.exitCode(), json.err());
    assertTrue(json.out().startsWith("[\n  {\n    \"id\": \"tpl-1\",\n"), json.out());
    assertTrue(json.out().contains("    \"lastUsed\": \"1970-01-01T00:16:40Z\",\n"), json.out());
  }

  @Test
  void the_table_has_one_row_per_template_and_shows_the_default_image() {
    assertEquals(
        "ID     IMAGE                                                 CPUS  MEMORY   DISK      SIZE       CLONES  LAST USED  NODE\n"
            + "tpl-1  docker.io/library/busybox:latest@sha256:abababababab  1     256 MiB  1024 MiB  210.0 MiB  3       1m ago     127.0.0.1:25520\n"
            + "tpl-2  <default>                                             2     512 MiB  1024 MiB  512 B      0       -          127.0.0.1:25520\n",
        TemplateText.table(List.of(BUSYBOX, DEFAULT), Instant.ofEpochSecond(1_060)));
    assertEquals("ID  IMAGE  CPUS  MEMORY  DISK  SIZE  CLONES  LAST USED  NODE\n", TemplateText.table(List.of(), Instant.EPOCH));
    assertEquals("[]\n", TemplateText.array(List.of()));
  }

  @Test
  void rm_sends_the_id_and_prints_it() {
    server = new TestSandboxServer(TemplateServiceMethods.SERVICE)
        .unary(TemplateServiceMethods.REMOVE_TEMPLATE, req -> BUSYBOX).start();

    TestCli.Result r = cli().run("template", "rm", "tpl-1");

    assertEquals(0, r.exitCode(), r.err());
    assertEquals("tpl-1\n", r.out());
    assertEquals(RemoveTemplateRequest.newBuilder().setId("tpl-1").build(), server.requests.get(0));
  }

  @Test
  void rm_of_an_unknown_template_says_what_the_node_says_and_exits_1() {
    server = new TestSandboxServer(TemplateServiceMethods.SERVICE)
        .unary(TemplateServiceMethods.REMOVE_TEMPLATE, req -> {
          throw Status.NOT_FOUND.withDescription("template tpl-9 not found on node 127.0.0.1:25520").asRuntimeException();
        }).start();

    TestCli.Result r = cli().run("template", "rm", "tpl-9");

    assertEquals(ExitCodes.REQUEST_FAILED, r.exitCode());
    assertEquals("flotilla: template tpl-9 not found on node 127.0.0.1:25520\n", r.err());
    assertEquals("", r.out());
  }
}
