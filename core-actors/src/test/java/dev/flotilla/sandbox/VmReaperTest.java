package dev.flotilla.sandbox;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.flotilla.vm.VmHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

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

  private static SandboxRuntime runtimeAt(Path vmRoot) {
    return new SandboxRuntime(Map.of(), vmRoot, "node", "host", null, null, null, null, 0, null, () -> false, null, null);
  }

  @Test
  void leftoversAreDeletedWhereTheNodePutThemNotWhereTheHandleSays(@TempDir Path tmp) throws Exception {
    Path vmRoot = Files.createDirectories(tmp.resolve("vms"));
    Path precious = Files.createDirectories(tmp.resolve("precious"));
    Files.writeString(precious.resolve("keep"), "x");
    SandboxRuntime runtime = runtimeAt(vmRoot);
    Path own = Files.createDirectories(runtime.vmStateDir("sb-0123456789abcdef", 3).resolve("sub"));
    Files.writeString(own.resolve("f"), "leftover");
    VmHandle lying = new VmHandle("process", "sb-0123456789abcdef", 3, 1, 1, precious, precious.resolve("a.sock"), Map.of());

    VmReaper.deleteDir(runtime, lying);

    assertTrue(Files.exists(precious.resolve("keep")), "the directory the handle named is untouched");
    assertFalse(Files.exists(runtime.vmStateDir("sb-0123456789abcdef", 3)), "the VM's own state directory is gone");
  }

  @Test
  void aStateDirSwappedForALinkIsNotFollowed(@TempDir Path tmp) throws Exception {
    Path vmRoot = Files.createDirectories(tmp.resolve("vms"));
    Path precious = Files.createDirectories(tmp.resolve("precious"));
    Files.writeString(precious.resolve("keep"), "x");
    SandboxRuntime runtime = runtimeAt(vmRoot);
    Files.createSymbolicLink(runtime.vmStateDir("sb-0123456789abcdef", 3), precious);
    VmReaper.deleteDir(runtime, vm(3));
    assertTrue(Files.exists(precious.resolve("keep")));
    // and a handle whose sandbox id would lead out of the VM root names nothing to delete
    VmReaper.deleteDir(runtime, new VmHandle("process", "../precious", 3, 1, 1, precious, precious.resolve("a"), Map.of()));
    assertTrue(Files.exists(precious.resolve("keep")));
  }

  @Test
  void aVmNewerThanTheJournalKnowsIsLeftAlone() {
    // Started just before a crash, before VmStarted was stored: the sandbox adopts or supersedes it.
    assertNull(VmReaper.reason(at(Phase.CREATING, 3), vm(4)));
  }
}
