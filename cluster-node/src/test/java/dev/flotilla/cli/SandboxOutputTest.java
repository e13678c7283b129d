package dev.flotilla.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.protobuf.Timestamp;
import dev.flotilla.api.v1.Phase;
import dev.flotilla.api.v1.RestartPolicy;
import dev.flotilla.api.v1.Sandbox;
import dev.flotilla.api.v1.SandboxEvent;
import dev.flotilla.api.v1.SandboxSpec;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.List;
import org.junit.jupiter.api.Test;

class SandboxOutputTest {
  private static final Instant CREATED = Instant.parse("2026-11-25T03:00:00.250Z");

  private static Sandbox sandbox() {
    return Sandbox.newBuilder()
        .setId("sb-1").setTenant("acme").setPhase(Phase.RUNNING)
        .setIncarnation(3).setNode("10.0.0.5:25520")
        .setSpec(SandboxSpec.newBuilder().setDriver("process").setVcpus(2).setMemoryMib(512)
            .setRestartPolicy(RestartPolicy.ON_FAILURE)
            .addAllCommand(List.of("sh", "-c", "echo it's me"))
            .putLabels("tier", "db").putLabels("app", "quote\"back\\slash\nnewline"))
        .setCreatedAt(ts(CREATED))
        .setStatusMessage("restarted after exit 1")
        .setRestartCount(2).setDesiredRunning(true)
        .build();
  }

  private static Timestamp ts(Instant i) {
    return Timestamp.newBuilder().setSeconds(i.getEpochSecond()).setNanos(i.getNano()).build();
  }

  @Test
  void get_json_has_the_contract_fields_with_their_json_types() {
    JsonObject o = JsonParser.parseString(SandboxJson.object(sandbox())).getAsJsonObject();

    assertEquals("sb-1", o.get("id").getAsString());
    assertEquals("acme", o.get("tenant").getAsString());
    assertEquals("RUNNING", o.get("phase").getAsString());
    assertTrue(o.get("incarnation").getAsJsonPrimitive().isNumber());
    assertEquals(3, o.get("incarnation").getAsLong());
    assertEquals("10.0.0.5:25520", o.get("node").getAsString());
    assertEquals("quote\"back\\slash\nnewline", o.getAsJsonObject("labels").get("app").getAsString());
    assertEquals("db", o.getAsJsonObject("labels").get("tier").getAsString());
    assertEquals("2026-11-25T03:00:00.250Z", o.get("createdAt").getAsString());
    assertEquals(CREATED, OffsetDateTime.parse(o.get("createdAt").getAsString()).toInstant());
    assertTrue(o.get("updatedAt").isJsonNull());
    assertEquals("restarted after exit 1", o.get("statusMessage").getAsString());
    assertEquals(2, o.get("restartCount").getAsInt());
    assertTrue(o.get("desiredRunning").getAsBoolean());
    JsonObject spec = o.getAsJsonObject("spec");
    assertEquals("process", spec.get("driver").getAsString());
    assertEquals(2, spec.get("vcpus").getAsInt());
    assertEquals(512, spec.get("memoryMib").getAsInt());
    assertEquals(List.of("sh", "-c", "echo it's me"),
        java.util.stream.StreamSupport.stream(spec.getAsJsonArray("command").spliterator(), false)
            .map(e -> e.getAsString()).toList());
    assertEquals("ON_FAILURE", spec.get("restartPolicy").getAsString());
    assertEquals(o.get("labels"), spec.get("labels"));
  }

  @Test
  void json_incarnation_is_unsigned_and_unknown_phases_keep_their_number() {
    Sandbox s = sandbox().toBuilder().setIncarnation(-1L).setPhaseValue(42).build();
    JsonObject o = JsonParser.parseString(SandboxJson.object(s)).getAsJsonObject();

    assertEquals("18446744073709551615", o.get("incarnation").getAsBigInteger().toString());
    assertEquals("PHASE_42", o.get("phase").getAsString());
  }

  @Test
  void json_escapes_control_characters() {
    assertEquals("\"a\\u0001b\\tc\"", SandboxJson.str("a\u0001b\tc"));
  }

  @Test
  void an_empty_listing_is_an_empty_array() {
    assertEquals("[]\n", SandboxJson.array(List.of()));
    assertEquals(2, JsonParser.parseString(SandboxJson.array(List.of(sandbox(), sandbox())))
        .getAsJsonArray().size());
  }

  @Test
  void table_columns_line_up_and_empty_values_show_a_dash() {
    Sandbox bare = Sandbox.newBuilder().setId("sb-long-identifier").setPhase(Phase.CREATING).build();
    String table = SandboxText.table(List.of(sandbox(), bare), CREATED.plusSeconds(3600 * 5));

    List<String> lines = table.lines().toList();
    assertEquals(3, lines.size(), table);
    assertTrue(lines.get(0).matches("ID {18}PHASE {5}INCARNATION  NODE {12}LABELS +AGE"), lines.get(0));
    // the newline inside a label is escaped, not printed: one sandbox, one row
    assertTrue(lines.get(1).contains("app=quote\"back\\slash\\nnewline,tier=db"), lines.get(1));
    assertEquals(lines.get(0).indexOf("AGE"), lines.get(1).lastIndexOf("5h"));
    assertTrue(lines.get(2).matches("sb-long-identifier\\s+CREATING\\s+0\\s+-\\s+-\\s+-"),
        lines.get(2));
  }

  @Test
  void details_for_people() {
    String text = SandboxText.details(sandbox(), CREATED.plusSeconds(90));

    assertTrue(text.contains("\nPhase:        RUNNING\n"), text);
    assertTrue(text.contains("\nIncarnation:  3\n"), text);
    assertTrue(text.contains("\nMemory:       512 MiB\n"), text);
    assertTrue(text.contains("\nRestart:      on-failure\n"), text);
    assertTrue(text.contains("\nCommand:      sh -c 'echo it'\\''s me'\n"), text);
    assertTrue(text.contains("\nLabels:       app=quote\"back\\slash\\nnewline,tier=db\n"), text);
    assertTrue(text.contains("\nCreated:      2026-11-25T03:00:00.250Z (1m30s ago)\n"), text);
    assertTrue(text.contains("\nUpdated:      -\n"), text);
  }

  @Test
  void a_watch_line_has_time_event_phase_incarnation_and_message() {
    SandboxEvent e = SandboxEvent.newBuilder().setSandbox(sandbox()).setEvent("restarted")
        .setAt(ts(CREATED)).build();

    assertEquals(List.of("2026-11-25T03:00:00.250Z", "restarted", "RUNNING", "3", "restarted",
        "after", "exit", "1"), List.of(SandboxText.watchLine(e).strip().split("\\s+")));
  }

  @Test
  void watch_lines_line_up_whatever_the_precision_of_their_times() {
    SandboxEvent nanos = SandboxEvent.newBuilder().setSandbox(sandbox()).setEvent("paused")
        .setAt(ts(Instant.parse("2026-11-25T03:00:00.123456789Z"))).build();
    SandboxEvent whole = nanos.toBuilder().setAt(ts(Instant.parse("2026-11-25T03:00:01Z"))).build();

    assertTrue(SandboxText.watchLine(nanos).startsWith("2026-11-25T03:00:00.123Z  paused "));
    assertTrue(SandboxText.watchLine(whole).startsWith("2026-11-25T03:00:01.000Z  paused "));
  }

  /** Text a sandbox wrote (file names, argv, status) cannot drive the user's terminal: C0, DEL and C1 are escaped. */
  @Test
  void controlCharactersFromASandboxAreEscaped() {
    assertEquals("a\\x1b[2Jb", Names.oneLine("a\u001b[2Jb"));
    assertEquals("a\\x9b31mb", Names.oneLine("a\u009b31mb"));
    assertEquals("x\\x7f\\ny", Names.oneLine("x\u007f\ny"));
    assertEquals("caf\u00e9 \u2603", Names.oneLine("caf\u00e9 \u2603"), "printable text stays as it is");
  }
}
