package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.typesafe.config.ConfigFactory;
import dev.flotilla.persistence.kryo.KryoCodec;
import dev.flotilla.sandbox.SandboxEntity.Event;
import dev.flotilla.sandbox.SandboxEntity.Live;
import dev.flotilla.sandbox.SandboxEntity.State;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * Events are forever: bytes stored by an earlier version must replay to the same state. The
 * fixture holds one sandbox's whole history as the Kryo serializer wrote it when the fixture was
 * made; it is never regenerated for a change of an event class (add a new event type, or a
 * field — which old bytes then replay without). Regenerate only to add events, with
 * {@code main} (see below), and keep the old file as another fixture.
 */
class StoredEventsTest {
  static final String FIXTURE = "/fixtures/sandbox-events-v1.bin";
  static final Instant T0 = Instant.parse("2026-11-25T00:00:00Z");

  static KryoCodec codec() {
    return new KryoCodec(ConfigFactory.load(), StoredEventsTest.class.getClassLoader(), () -> null);
  }

  /** The history the fixture was written from (also the generator's input). */
  static List<Event> history() {
    var spec = new SandboxSpec("process", 2, 512, Map.of("team", "infra"), RestartPolicy.ON_FAILURE);
    var loc = new VmLocation("10.0.0.1:25520", "machine-a:/data", "process", 4242, 987654, "/data/vms/sb-0123456789abcdef-1",
        "/data/vms/sb-0123456789abcdef-1/agent.sock", Map.of("cgroup.memory", "/sys/fs/cgroup/memory/flotilla/x"));
    return List.of(
        new SandboxEntity.Created("sb-0123456789abcdef", "acme", spec, "req-7", T0),
        new SandboxEntity.VmStartRequested(1, "10.0.0.1:25520", "created", 0, T0.plusSeconds(1)),
        new SandboxEntity.VmStarted(1, loc, false, T0.plusSeconds(2)),
        new SandboxEntity.Paused(T0.plusSeconds(3)),
        new SandboxEntity.Resumed(T0.plusSeconds(4)),
        new SandboxEntity.VmEnded(1, new VmEnd(-1, 9, "killed by signal 9", false), T0.plusSeconds(5)),
        new SandboxEntity.VmStartRequested(2, "10.0.0.2:25520", "restart 1/5 after: killed by signal 9", 1, T0.plusSeconds(6)),
        new SandboxEntity.VmStarted(2, loc, true, T0.plusSeconds(7)),
        new SandboxEntity.StopRequested(T0.plusSeconds(8)),
        new SandboxEntity.VmEnded(2, new VmEnd(0, 0, "stopped", true), T0.plusSeconds(9)),
        new SandboxEntity.StartRequested(T0.plusSeconds(10)),
        new SandboxEntity.VmStartRequested(3, "10.0.0.1:25520", "started", 0, T0.plusSeconds(10)),
        new SandboxEntity.SandboxFailed("restart budget exhausted after 5 restarts; last: x", T0.plusSeconds(11)),
        new SandboxEntity.DeleteRequested(T0.plusSeconds(12)),
        new SandboxEntity.Deleted(T0.plusSeconds(13)));
  }

  static State replay(List<Event> events) {
    State s = new SandboxEntity.Empty();
    for (Event e : events) s = SandboxEntity.apply(s, e);
    return s;
  }

  @Test
  void storedEventsReplayToTheSameState() throws IOException {
    List<Event> stored = new ArrayList<>();
    KryoCodec codec = codec();
    try (InputStream in = StoredEventsTest.class.getResourceAsStream(FIXTURE); DataInputStream d = new DataInputStream(in)) {
      int n = d.readInt();
      for (int i = 0; i < n; i++) {
        byte[] bytes = new byte[d.readInt()];
        d.readFully(bytes);
        stored.add((Event) codec.fromBinary(bytes));
      }
    }
    assertEquals(history(), stored, "stored events decode to what was written");
    Live end = (Live) replay(stored);
    assertEquals(Phase.DELETED, end.phase());
    assertEquals(3, end.incarnation());
    assertEquals(replay(history()), end);
    // And a prefix replays through every phase the history passed.
    assertEquals(Phase.RUNNING, ((Live) replay(stored.subList(0, 5))).phase());
    assertEquals(Phase.CREATING, ((Live) replay(stored.subList(0, 7))).phase());
    assertEquals(Phase.STOPPED, ((Live) replay(stored.subList(0, 10))).phase());
  }

  /** Writes the fixture: {@code main <core-actors>/src/test/resources/fixtures/sandbox-events-vN.bin}. */
  public static void main(String[] args) throws IOException {
    KryoCodec codec = codec();
    try (var out = new DataOutputStream(Files.newOutputStream(Path.of(args[0])))) {
      List<Event> h = history();
      out.writeInt(h.size());
      for (Event e : h) {
        byte[] b = codec.toBinary(e);
        out.writeInt(b.length);
        out.write(b);
      }
    }
  }
}
