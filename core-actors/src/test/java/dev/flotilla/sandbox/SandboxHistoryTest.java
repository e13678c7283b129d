package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Instant;
import java.util.Map;
import org.junit.jupiter.api.Test;

/**
 * How each journaled event reads in {@code flotilla events}. Reading a real entity's history back
 * from the journal: {@code SandboxEntityTest.theHistoryIsReadBackFromTheJournal...}.
 */
class SandboxHistoryTest {

  @Test
  void movesRestartsExitsAndFailuresSayWhatHappened() {
    Instant at = Instant.parse("2026-12-03T10:00:00Z");
    var moved = SandboxHistory.describe(7, new SandboxEntity.VmStartRequested(3, "10.0.0.2:25520",
        "moved here: lost: VM was on host h-1 (node 10.0.0.1:25520)", 0, at));
    assertEquals("moved", moved.kind());
    assertEquals("moved to node 10.0.0.2:25520 as incarnation 3 after lost: VM was on host h-1 (node 10.0.0.1:25520)",
        moved.description());
    var restart = SandboxHistory.describe(8, new SandboxEntity.VmStartRequested(4, "10.0.0.2:25520",
        "restart 1/5 after: exit 1", 1, at));
    assertEquals("restarting", restart.kind());
    assertEquals(4, restart.incarnation());
    var killed = SandboxHistory.describe(9, new SandboxEntity.VmEnded(4, new VmEnd(-1, 9, "OOM", false), at));
    assertEquals("incarnation 4 killed by signal 9: OOM", killed.description());
    var failed = SandboxHistory.describe(10, new SandboxEntity.SandboxFailed("restart budget exhausted", at));
    assertEquals("failed", failed.kind());
    assertEquals("failed: restart budget exhausted", failed.description());
    var reattached = SandboxHistory.describe(11, new SandboxEntity.VmStarted(4,
        new VmLocation("10.0.0.2:25520", "h-2", "process", 1, 2, "/x", "/x/a.sock", Map.of()), true, at));
    assertEquals("vm-reattached", reattached.kind());
    assertTrue(!reattached.description().contains("/x"), "no node paths for the tenant: " + reattached.description());
    assertEquals(at, reattached.at());
    assertEquals(11, reattached.sequence());
  }


}
