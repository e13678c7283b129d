package dev.flotilla.node.local;

import dev.flotilla.vm.VmDirectory;
import dev.flotilla.vm.VmHandle;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** The cgroups that sandboxes killed from outside (not by their node) leave behind. */
final class Cgroups {
  private Cgroups() {}

  /** Removes the (now empty) cgroup directories named by the VM handles under {@code dataDir/vms}. */
  static void removeLeftovers(Path dataDir) {
    for (VmHandle h : new VmDirectory(dataDir.resolve("vms")).handles()) {
      h.extra().forEach((k, v) -> {
        if (!k.startsWith("cgroup.")) return;
        try {
          Files.deleteIfExists(Path.of(v));
        } catch (IOException | RuntimeException ignored) {
          // not empty or already gone: nothing more to do from here
        }
      });
    }
  }
}
