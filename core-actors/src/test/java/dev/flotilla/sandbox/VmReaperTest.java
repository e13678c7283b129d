package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

import dev.flotilla.vm.VmHandle;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Which VMs the reaper stops: never the current incarnation of a sandbox that should run. */
class VmReaperTest {
  static VmHandle vm(long incarnation) {
    return new VmHandle("process", "sb-0123456789abcdef", incarnation, 1, 1, Path.of("/tmp/v"), Path.of("/tmp/v/a.sock"), Map.of());
  }

  static SandboxEntity.Inspection at(Phase phase, long incarnation) {
    return new SandboxEntity.Inspection(true, phase, incarnation, "h");
  }

  @Test
  void keepsTheCurrentIncarnationWhileItShouldRun() {
    for (Phase p : new Phase[] {Phase.CREATING, Phase.RUNNING, Phase.PAUSED, Phase.STOPPING, Phase.DELETING}) {
      assertNull(VmReaper.reason(at(p, 3), vm(3)), p.toString());
    }
  }

  @Test
  void reapsDeletedOlderAndStoppedOnes() {
    assertEquals("sandbox deleted", VmReaper.reason(new SandboxEntity.Inspection(false, Phase.DELETED, 0, ""), vm(3)));
    assertEquals("sandbox is at incarnation 4", VmReaper.reason(at(Phase.RUNNING, 4), vm(3)));
    assertEquals("sandbox is STOPPED", VmReaper.reason(at(Phase.STOPPED, 3), vm(3)));
    assertEquals("sandbox is FAILED", VmReaper.reason(at(Phase.FAILED, 3), vm(3)));
  }

  @Test
  void aVmNewerThanTheJournalKnowsIsLeftAlone() {
    // Started just before a crash, before VmStarted was stored: the sandbox adopts or supersedes it.
    assertNull(VmReaper.reason(at(Phase.CREATING, 3), vm(4)));
  }
}
